/*
 * zeroize.h - keep secrets safe while they live in memory, and remove them
 * without a trace when they are done.
 *
 * Families of calls, each with its manual page (generated from this file:
 * each section's banner names its page; zeroize(7) is the overview):
 *   - wiping and comparing:   zz_wipe, zz_equal, zz_is_zero        zz_wipe(3)
 *   - guarded, locked blocks: zz_alloc, zz_free, zz_realloc, ...  zz_alloc(3)
 *     and their access modes: zz_protect                        zz_protect(3)
 *   - caller-owned memory:    zz_lock, zz_unlock, zz_unlock_keep   zz_lock(3)
 *   - many small secrets:     zz_arena_*                          zz_arena(3)
 *   - process-wide:           zz_get_stats, zz_set_cache_decay_ms zz_stats(3)
 *                             zz_set_lock_policy, zz_set_backend,
 *                             zz_last_error, zz_version, ...     zz_policy(3)
 *                             zz_purge, zz_purge_on_signals       zz_purge(3)
 * And, in a library of its own (libzeroize-shield, zeroize_shield.h, built
 * with libsodium): shielded secrets, kept encrypted in memory and opened
 * into a read-only zz_alloc block only while in use (zz_shield_*).
 *
 * Error model (the same everywhere):
 *   - A resource failure or a bad argument returns NULL or -1 and sets errno.
 *     Nothing is printed; zz_last_error() describes the failure for a person,
 *     including how to raise the limit that was hit.
 *   - Misuse that can only come from a bug (double free, a pointer this
 *     library never returned, a corrupted canary) is fatal: one line
 *     "zeroize: <fault>" is written to stderr and the process aborts.  These
 *     checks are always compiled in.
 *
 * All functions are thread-safe unless stated otherwise.
 *
 * Attributes: results that must not be dropped (a new block, or the block
 * that replaces the old one) are marked warn_unused_result; a pointer
 * argument whose NULL can only be a bug is marked nonnull, so the compiler
 * warns at a call that passes a literal NULL.  Arguments for which NULL is
 * documented (zz_free(NULL), zz_size(NULL), ...) carry no such mark.
 */
#ifndef ZEROIZE_H
#define ZEROIZE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ZZ_EXPORT __attribute__((visibility("default")))
#define ZZ_MALLOC_LIKE __attribute__((malloc, warn_unused_result))
#define ZZ_WARN_UNUSED __attribute__((warn_unused_result))
#define ZZ_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#else
#define ZZ_EXPORT
#define ZZ_MALLOC_LIKE
#define ZZ_WARN_UNUSED
#define ZZ_NONNULL(...)
#endif

/* ------------------------------------------------------------------------ */
/* The library's version                                       zz_policy(3) */
/* ------------------------------------------------------------------------ */

#define ZEROIZE_VERSION_MAJOR 0
#define ZEROIZE_VERSION_MINOR 1
#define ZEROIZE_VERSION_PATCH 0
#define ZEROIZE_VERSION_STRING "0.1.0"

/* The library's version string, e.g. "0.1.0" (for programs linked against a
 * shared library that may be newer than the header they were built with). */
ZZ_EXPORT const char *zz_version(void);

/* ------------------------------------------------------------------------ */
/* Wiping and comparing                                          zz_wipe(3) */
/* ------------------------------------------------------------------------ */

/* Overwrites n bytes at p with zeros.  No compiler, optimiser or link-time
 * optimisation can remove the store, even when p is never read again.
 * Runs at least at the speed of memset: its own vector stores up to 256 KiB
 * (never `rep stos`, which some Intel CPUs make slow when it ends in front
 * of an inaccessible page, as a guarded block does), memset above.
 * n == 0 is a no-op and p may then be NULL.
 * Async-signal-safe. */
ZZ_EXPORT void zz_wipe(void *p, size_t n);

/* Compares n bytes at a and b.  Returns 1 if they are equal, 0 if not.
 * The running time depends on n only, never on the contents or on where the
 * first difference lies.  n == 0 returns 1 (a, b may then be NULL). */
ZZ_EXPORT int zz_equal(const void *a, const void *b, size_t n);

/* Returns 1 if all n bytes at p are zero, else 0, in time that depends on n
 * only.  n == 0 returns 1. */
ZZ_EXPORT int zz_is_zero(const void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* Guarded blocks                                               zz_alloc(3) */
/* ------------------------------------------------------------------------ */

/* Allocates n bytes for a secret.  The block is zero-filled and 16-byte
 * aligned, and lives on pages that hold nothing else:
 *
 *     [guard page][slack | head canary | block | tail canary][guard page]
 *
 * Its end lies within 15 bytes of a PROT_NONE guard page and a guard page
 * precedes its first page, so a linear overflow or underflow faults at once;
 * canaries in the slack before the block and in the (up to 15) bytes after it
 * catch what the guard pages cannot, and are checked by zz_free.  The pages
 * are locked in RAM (mlock), excluded from core dumps (MADV_DONTDUMP), and
 * read as zeros in a forked child (MADV_WIPEONFORK).  zz_info() tells which
 * of these the kernel actually granted.
 *
 * zz_alloc(0) returns a unique pointer that zz_free accepts; it points at a
 * guard page, so any access faults.
 *
 * Steady state makes no system call: freed blocks are wiped and kept, still
 * guarded and locked, in a cache of free slots.  Each size class keeps up to
 * the largest of 1 MiB, its live bytes, and its recent peak of bytes in use,
 * a peak held for one decay period and halved every period after
 * (zz_set_cache_decay_ms, default 10 s): a burst that is freed and comes
 * back soon makes no system call.
 * When a mapping or a lock is refused (the RLIMIT_MEMLOCK, memory), every
 * cached slab is unmapped at once and the allocation tried again, so cached
 * memory never makes a live block fail.
 *
 * Threads: each thread keeps a small cache of its own wiped free slots
 * (blocks up to 16 KiB: at most 8 slots per size class and backend, in at
 * most 8 slabs it pins), so a thread's steady alloc/free takes no shared
 * lock.  A thread's cache goes back when
 * the thread exits; in a forked child every thread's cache is taken back;
 * when the lock policy becomes ZZ_LOCK_REQUIRED each thread gives its
 * cache back at its next call.  When a mapping or a lock is refused (and on
 * zz_trim) the calling thread takes back every slot that any thread's cache
 * holds, at once, and unmaps the slabs left empty, whether or not their
 * threads ever call again: an idle or blocked thread keeps no locked memory
 * that another needs.  zz_get_stats counts the threads' cached slots in
 * cached_bytes.
 *
 * Under a finite RLIMIT_MEMLOCK (no CAP_IPC_LOCK: every unprivileged
 * process) the caches stay on, and together (size classes and threads)
 * keep at most half the limit locked in free slots (zz_get_stats:
 * cache_locked_bytes <= cache_share_bytes, brought within it by every call
 * that takes the global lock, zz_get_stats included; a thread's cache may
 * take in up to 15 slots more before its next such call): the rest of the
 * limit stays for live blocks and for other users of mlock in the process.
 * A live batch whose slots fit in the share is kept whole (slabs are sized
 * to fit in what the share has left); one that locked more than the share
 * maps the excess again when it comes back, in small slabs.  The limit and the capability are read again by calls that
 * take the global lock (an allocation its thread's cache cannot serve,
 * zz_get_stats, zz_trim), at most once per clock tick (a few
 * milliseconds), and at once when a mapping or lock is refused, so a limit
 * lowered at run time (setrlimit, dropping to another user, capset) is
 * noticed there; a thread's steady alloc/free makes no system call to
 * look.
 *
 * After fork(), in the child: blocks made before the fork read as zeros and
 * can be freed.  The kernel copies neither locks nor (into WIPEONFORK
 * mappings) MADV_GUARD_INSTALL guards to a child, so until the child
 * allocates from the same slab, zz_info() on those blocks lacks
 * ZZ_INFO_LOCKED (and ZZ_INFO_GUARDED on the guard-install path); the first
 * allocation puts both back for the whole slab.
 *
 * The library's own atfork handlers are registered when it is loaded.  A
 * program's handler registered later (in main(), or by a library loaded
 * after it) may call the library: its prepare handler runs before the
 * library's, its parent and child handlers after them.  A handler registered
 * earlier (a constructor that runs before the library's) runs while the
 * library's handlers hold every library lock: a call from it that needs a
 * lock, and in the child any call that notices a fork (below) but zz_purge,
 * is fatal ("zeroize: called from an atfork handler during fork") instead
 * of a deadlock.
 *
 * A fork that runs no atfork handler (_Fork(), a raw clone() without
 * CLONE_VM) is noticed in the child by zz_purge and by the first call that
 * takes a library lock or reads library state: every call on a block or an
 * arena, zz_alloc*, zz_get_stats, zz_lock/zz_unlock and zz_purge_on_signals
 * (a byte on a MADV_WIPEONFORK page reads zero in any child: one load per
 * call).  Another thread of the parent may have been inside the library at
 * that moment; the child trusts nothing such a thread could have been
 * changing, and rebuilds the allocator from the slots' states and the list
 * zz_purge walks, without malloc.  In such a child:
 *   - zz_purge takes no lock and never waits for a purge of the parent's
 *     threads; it wipes every inherited block (secret memory, which the
 *     child does not inherit, is replaced by zero pages first);
 *   - inherited blocks read zero and can be freed; a block another thread
 *     was allocating or freeing at the fork ends up free or stays live (and
 *     is never freed);
 *   - allocation works as after fork(), but takes metadata from malloc: in
 *     the child of a threaded parent, where POSIX allows only
 *     async-signal-safe functions, it is as safe as malloc is there (glibc's
 *     may deadlock if a thread of the parent held its lock);
 *   - zz_wipe, zz_equal, zz_is_zero, zz_version and the getters and setters
 *     of settings and errors do not notice: until a call that does, an
 *     inherited secret-memory block is not mapped, and touching it faults.
 * A vfork() child shares the parent's memory: call nothing but exec or _exit.
 *
 * Returns NULL and sets errno on failure:
 *   ENOMEM   n is too large, or the kernel refused memory or a mapping
 *            (vm.max_map_count)
 *   EAGAIN, EPERM, ENOMEM from mlock when the pages cannot be locked under
 *            the ZZ_LOCK_REQUIRED policy (the default): see zz_last_error()
 *            and RLIMIT_MEMLOCK (`ulimit -l`).
 */
ZZ_EXPORT ZZ_MALLOC_LIKE void *zz_alloc(size_t n);

/* Like zz_alloc, but the block starts at a multiple of alignment, which must
 * be a power of two no larger than the page size (EINVAL otherwise).  The end
 * of the block may then lie further than 15 bytes from the trailing guard
 * page; the canary covers the gap.  Free it with zz_free. */
ZZ_EXPORT ZZ_MALLOC_LIKE void *zz_alloc_aligned(size_t n, size_t alignment);

/* Wipes and frees a block from zz_alloc, zz_alloc_aligned or zz_realloc.
 * NULL is a no-op.  Works whatever the block's protection mode.  Preserves
 * errno.  After it returns, the old contents are gone: a read through a stale
 * pointer yields zeros or faults.
 *
 * Fatal ("zeroize: ..." on stderr, then abort()):
 *   "zeroize: double free"                       p was already freed
 *   "zeroize: invalid pointer"                   p was never returned by
 *                                                zz_alloc (inside a block, a
 *                                                malloc'd pointer, an arena
 *                                                block, ...)
 *   "zeroize: canary corrupted (before block)"   an underflow was written
 *   "zeroize: canary corrupted (after block)"    an overflow was written
 *
 * A double free is always detected while the slot has not been handed out
 * again (for a block whose mapping was unmapped, among the last 4,096 such
 * blocks); once a later zz_alloc reuses the address, freeing the stale
 * pointer frees the new block (no allocator that reuses addresses can tell
 * them apart).  Two threads that free one block at once: exactly one
 * succeeds, the other aborts with "zeroize: double free".  Freed slots are
 * reused last-in, first-out (per thread and size class, see below).
 *
 * Canaries: every slot's (and every arena cell's) canaries are random words
 * of their own, drawn from getrandom when the slab or run is set up and kept
 * out of band: reading some canaries (an over-read) tells nothing about any
 * other, so they cannot be forged elsewhere. */
ZZ_EXPORT void zz_free(void *p);

/* Changes the size of a block: a new guarded block of n bytes receives the
 * first min(n, old size) bytes (copied through general-purpose registers
 * only, so no copy is left in vector registers or on the stack), then the
 * old block is wiped and freed.  The new block keeps the old one's backend
 * (a zz_alloc_backend(.., ZZ_BACKEND_SECRETMEM) block stays in secret
 * memory whatever zz_set_backend says) and its alignment (a
 * zz_alloc_aligned block stays aligned as asked).  p == NULL acts as
 * zz_alloc(n).  On failure returns NULL with errno, and p is untouched and
 * still valid (EACCES and ZZ_ERR_NOACCESS if p is in ZZ_NOACCESS mode: its
 * contents cannot be read to be copied).  Misuse of p is fatal as
 * in zz_free.  The new block is in ZZ_READWRITE mode.  On success p is
 * freed, so the result must replace it (warn_unused_result). */
ZZ_EXPORT ZZ_WARN_UNUSED void *zz_realloc(void *p, size_t n);

/* The n given to zz_alloc (or zz_realloc) for this block.  zz_size(NULL) is
 * 0.  A pointer this library did not return is fatal ("invalid pointer"), a
 * freed one too ("use after free (the block was already freed)"). */
ZZ_EXPORT size_t zz_size(const void *p);

/* ------------------------------------------------------------------------ */
/* Protection modes                                           zz_protect(3) */
/* ------------------------------------------------------------------------ */

/* Protection modes for zz_protect. */
#define ZZ_NOACCESS 0
#define ZZ_READONLY 1
#define ZZ_READWRITE 2

/* Sets the access mode of the pages that hold the block (mprotect).  Any
 * access in ZZ_NOACCESS, and any write in ZZ_READONLY, then faults.
 * Returns 0, or -1 with errno: EINVAL for an unknown mode, ENOMEM when the
 * kernel cannot split the mapping (vm.max_map_count).  Works on zz_alloc
 * blocks only (not arena blocks: EINVAL).  A pointer this library did not
 * return, NULL included, is fatal ("invalid pointer"), as in zz_free. */
ZZ_EXPORT ZZ_NONNULL(1) int zz_protect(void *p, int mode);

/* ------------------------------------------------------------------------ */
/* What protects a block                                        zz_alloc(3) */
/* ------------------------------------------------------------------------ */

/* Bit flags returned by zz_info: what protects this block now, as actually
 * obtained from the kernel. */
#define ZZ_INFO_LOCKED     0x01u /* pages locked in RAM (mlock)              */
#define ZZ_INFO_DONTDUMP   0x02u /* excluded from core dumps                 */
#define ZZ_INFO_WIPEONFORK 0x04u /* a forked child sees zeros, never the bytes
                                    (MADV_WIPEONFORK; on secretmem MADV_DONTFORK
                                    and zero pages mapped in the child: see
                                    zz_set_backend)                           */
#define ZZ_INFO_GUARDED    0x08u /* guard pages before and after             */
#define ZZ_INFO_SECRETMEM  0x10u /* memfd_secret: out of the kernel's map    */
#define ZZ_INFO_CANARY     0x20u /* canaries checked on free                 */
#define ZZ_INFO_PACKED     0x40u /* shares its pages with other arena blocks:
                                    canaries, not guard pages, separate it from
                                    its neighbours (ZZ_INFO_GUARDED is then about
                                    the pages around the arena's memory)       */

/* The ZZ_INFO_* flags in force for a block (zz_alloc or arena).
 * zz_info(NULL) is 0.  A foreign pointer is fatal ("invalid pointer"), a
 * freed one too ("use after free (the block was already freed)"). */
ZZ_EXPORT unsigned zz_info(const void *p);

/* ------------------------------------------------------------------------ */
/* Caller-owned memory                                           zz_lock(3) */
/* ------------------------------------------------------------------------ */

/* Locks the pages spanning [p, p+n) in RAM (mlock) and excludes them from
 * core dumps (MADV_DONTDUMP).  Locks are counted per page: a page stays
 * locked until every zz_lock that covers it has been matched by a zz_unlock,
 * so unlocking one buffer never unlocks a neighbour that shares its page.
 * WARNING: other data on the same pages is also locked and left out of core
 * dumps while the lock is held.
 *
 * When a page's count goes from 0 to 1, zz_lock reads its mapping's flags in
 * /proc/self/smaps: a page already locked (by you, another allocator,
 * mlockall) or already excluded from dumps is recorded so, and zz_unlock
 * leaves that state alone.  Cost: smaps is read up to the range, so about
 * 30 us for a heap buffer, more for a range high in a big address space (on
 * a 2-vCPU VM, Linux 6.18: 84 us for a stack buffer with 27 mappings, 14 ms
 * with 5,000).  The limit: the state is sampled then; if someone else locks
 * the page (or sets MADV_DONTDUMP) while our count is held, our last
 * zz_unlock undoes that too, since the kernel keeps one flag per page and no
 * count.
 *
 * n == 0 returns 0.  Returns -1 with errno on failure (nothing is left
 * locked): EINVAL (p is NULL, or p + n wraps past the end of the address
 * space), ENOMEM when part of the range is not mapped (zz_last_error()
 * names the unmapped range), ENOMEM or EAGAIN or EPERM from mlock
 * (RLIMIT_MEMLOCK, see zz_last_error()). */
ZZ_EXPORT int zz_lock(void *p, size_t n);

/* Wipes [p, p+n) with zz_wipe, then drops one lock count on each page of the
 * range; a page whose count reaches zero gets back what zz_lock changed: it
 * is unlocked (munlock) if zz_lock locked it, and included in core dumps
 * again if zz_lock excluded it.  Pages that zz_lock never counted are only
 * wiped.  n == 0 returns 0.  EINVAL as for zz_lock (nothing is wiped then).
 * Returns -1 with errno if the kernel refuses (the range is wiped
 * regardless). */
ZZ_EXPORT int zz_unlock(void *p, size_t n);

/* Like zz_unlock, but keeps the contents. */
ZZ_EXPORT int zz_unlock_keep(void *p, size_t n);

/* ------------------------------------------------------------------------ */
/* Arenas: many small secrets packed together                   zz_arena(3) */
/* ------------------------------------------------------------------------ */

typedef struct zz_arena zz_arena;

/* Creates an arena.
 *
 * capacity > 0: a fixed arena; its memory is reserved, locked and guarded up
 * front and it never grows.  A block of n bytes costs round_up(n, 16) + 16
 * bytes (the 16 are its canary), and capacity = count * (round_up(n, 16) +
 * 16) always holds count blocks of n bytes, for every n.  It serves any block
 * its free space holds, up to about 4 GiB (an empty arena of capacity C
 * serves one block of C - 16 bytes).  Blocks of one size share runs of up to
 * 16 KiB; blocks above 8,160 bytes get a run of their own, which goes back
 * when they are freed.  The arena reserves 1/8 of the capacity plus 32 KiB
 * more than the capacity, for the runs' trailing canaries and a mix of sizes
 * (a mix may still fragment it: then ENOMEM says it is full).  capacity is
 * what the arena promises to hold, not a limit: it serves blocks from that
 * reserve too (zz_arena_create(64) holds 1,022 blocks of 16 bytes); a caller
 * that needs a hard limit counts the blocks' costs itself (the Python Arena
 * does).  It maps round_up(capacity + capacity / 8 + 32 KiB, page size)
 * bytes plus a guard page at each end, and locks the same (the guard pages
 * included with MADV_GUARD_INSTALL guards, left out with mprotect ones):
 * 45,056 bytes for a capacity of 1 with 4 KiB pages.
 *
 * capacity == 0: the arena grows on demand in guarded, locked chunks: 64 KiB
 * first, then each new chunk a quarter of the arena's size so far (at least
 * 64 KiB, at most 4 MiB), so growth never leaves more than a quarter unused.
 * When a chunk cannot be locked (RLIMIT_MEMLOCK) or mapped, smaller ones are
 * tried, down to a single 16 KiB run, before the allocation fails: the
 * arena's secrets can fill the whole lock limit (174,592 32-byte secrets
 * under 8 MiB).  Under ZZ_LOCK_BEST_EFFORT a chunk is mapped unlocked only
 * when no smaller one can be locked.
 * Blocks up to 16,336 bytes are packed in runs of 16 KiB, one size class
 * each (steps of 16 bytes up to 1 KiB, 64 up to 4 KiB, 256 beyond); larger
 * blocks, of any size, get a guarded mapping of their own (as zz_alloc
 * gives blocks above 64 KiB), with the same canaries, purge and statistics,
 * and zz_arena_destroy frees them too.
 *
 * Both kinds follow the lock policy and the backend as zz_alloc does, for
 * every block they hand out: a chunk mapped unlocked under
 * ZZ_LOCK_BEST_EFFORT is locked, or else retired (its live blocks stay
 * valid, it hands out no more), as soon as the policy becomes
 * ZZ_LOCK_REQUIRED; in a forked child a chunk is locked and guarded again
 * before it hands out a block, and a secretmem arena's chunks, which the
 * child sees as anonymous zero pages, are retired (a growable arena maps new
 * secret memory; a fixed one fails with ENOMEM).
 *
 * Threads: a fixed arena takes its lock on every alloc and free, so all of
 * its capacity is available to every thread.  A growable arena keeps, per
 * thread, a small cache of wiped free cells (about 4 KiB per size class the
 * thread uses, at most 32 cells; for up to 4 arenas per thread) and gives
 * each thread runs of its own, so threads neither wait for each other nor
 * share cache lines: a thread that starts on a size class takes a run nobody
 * uses, or a new one (16 KiB; the arena grows if it has no room), rather
 * than share another thread's.  Under a finite RLIMIT_MEMLOCK (no
 * CAP_IPC_LOCK) locked memory comes first: caches hold 2 cells and the arena
 * grows only when no run has a free cell.  A thread's cache goes back to the
 * arena when the thread exits.  A growable arena's zz_arena_free finds,
 * claims and checks the block without a lock.
 * Returns NULL with errno on failure (ENOMEM, or the lock failure's errno).
 * In a forked child, an arena made before the fork keeps working (its blocks
 * read as zeros there). */
ZZ_EXPORT zz_arena *zz_arena_create(size_t capacity);

/* A zero-filled, 16-byte aligned block of n bytes from the arena.  Blocks are
 * packed (a 32-byte secret costs 48 bytes of locked memory, a 16-byte one 32)
 * and separated by canaries (a random word each, kept out of band); metadata
 * is kept outside the arena's memory.  A block of 0 bytes is a unique pointer
 * to 16 zero bytes (no canary is exposed there; they must stay zero).
 * Returns NULL with ENOMEM when a fixed arena has no room for the block:
 * never memory from anywhere else.  EINVAL for a NULL arena.  Threads may
 * share an arena.  Not async-signal-safe (nor is zz_arena_free): from a
 * signal handler, call zz_purge only. */
ZZ_EXPORT ZZ_MALLOC_LIKE void *zz_arena_alloc(zz_arena *a, size_t n);

/* Wipes and frees an arena block.  NULL p is a no-op.  Fatal: "zeroize: double
 * free", "zeroize: invalid pointer" (not from this arena), "zeroize: canary
 * corrupted (after block)" / "(before block)" (for a 0-byte block: any of
 * its 16 bytes written). */
ZZ_EXPORT void zz_arena_free(zz_arena *a, void *p);

/* Checks every canary, wipes every block (live or not), and unmaps the arena.
 * NULL is a no-op. */
ZZ_EXPORT void zz_arena_destroy(zz_arena *a);

/* ------------------------------------------------------------------------ */
/* Statistics and zz_alloc's cache of free slots                zz_stats(3) */
/* ------------------------------------------------------------------------ */

/* Fields are added at the end only, never reordered or removed: the sized
 * calls below keep a program built against an older header working. */
typedef struct {
    size_t live_blocks;  /* blocks handed out and not yet freed (zz_alloc and arenas) */
    size_t live_bytes;   /* sum of their requested sizes                              */
    size_t locked_bytes; /* bytes this library holds locked (as the kernel counts
                            them against RLIMIT_MEMLOCK, zz_lock pages included)      */
    size_t mapped_bytes; /* bytes this library has mapped, guard pages included       */
    size_t cached_bytes; /* of those, zz_alloc's free slots kept for reuse (wiped,
                            guarded, locked as the policy asks), guard pages included,
                            the threads' own caches included                           */
    size_t cache_bound_bytes; /* the most the zz_alloc cache keeps now, in the unit of
                            cached_bytes: the sum over the size classes in use of the
                            bound zz_alloc() describes, plus what the threads' own
                            caches hold (each within its own small bound)              */
    size_t cache_locked_bytes; /* of cached_bytes, what is locked (the threads' caches'
                            too): on the mprotect guard path an anon slot's data pages
                            only, a secretmem slot's guard page as well (the kernel
                            charges the whole mapping)                                 */
    size_t cache_share_bytes; /* the most the zz_alloc caches keep locked: half of a
                            finite RLIMIT_MEMLOCK (zz_alloc()), SIZE_MAX without one  */
} zz_stats;

/* Fills *out with a snapshot of the counters above.  out must not be NULL.
 *
 * zz_stats grows at its end as the library learns to count more (its fields
 * are never reordered or removed), so the caller says how big its copy is:
 * zz_get_stats(out) passes sizeof(zz_stats) as the header it was compiled
 * against has it, and the library fills exactly that many bytes, never more
 * (as Linux's clone3 and openat2 take a struct's size).  A program built
 * against an older header keeps working with a newer library (it gets the
 * fields it knows); one built against a newer header, run with an older
 * library, reads 0 in the fields that library does not know.  docs/ABI.md
 * says the rules.
 *
 * zz_get_stats_sized(out, size) is the function behind the macro: it fills
 * the first `size` bytes of *out.  Returns 0, or -1 with EINVAL when out is
 * NULL or size is smaller than ZZ_STATS_SIZE_0_1, the struct of version 0.1
 * (six fields, the first published).  (zz_get_stats)(out), the function
 * itself (an older binary's call, or a pointer taken to it), fills the 0.1
 * fields only. */
#define ZZ_STATS_SIZE_0_1 (6 * sizeof(size_t))
ZZ_EXPORT ZZ_NONNULL(1) int zz_get_stats_sized(zz_stats *out, size_t size);
ZZ_EXPORT ZZ_NONNULL(1) void (zz_get_stats)(zz_stats *out);
#define zz_get_stats(out) ((void)zz_get_stats_sized((out), sizeof(zz_stats)))

/* How long zz_alloc's free-slot cache remembers a peak of demand: the peak a
 * size class's cache may keep is held for `ms` milliseconds after it was
 * last seen, then halves every `ms` (applied by the class's frees that empty
 * a slab, which read the clock once every 16 of them: there is no timer).  0 remembers
 * no peak: a class keeps the larger of 1 MiB and its live bytes.  The
 * environment variable ZEROIZE_CACHE_DECAY_MS (a decimal number, read on
 * first use) sets the initial value; the default is 10000.  Returns 0, or -1
 * with EINVAL when ms exceeds one day (86400000). */
ZZ_EXPORT int zz_set_cache_decay_ms(unsigned long ms);

/* The current decay period of zz_alloc's cache, in milliseconds. */
ZZ_EXPORT unsigned long zz_get_cache_decay_ms(void);

/* Gives zz_alloc's cached memory back to the kernel now: every free slot
 * that the size classes keep and that any thread's cache holds (taken from
 * idle and running threads alike, without waiting for them) is released,
 * every slab left without a live block is unmapped (its lock goes with it),
 * and the remembered peaks of demand are forgotten.  Live blocks are not
 * touched.  After every zz_alloc block is freed, zz_trim leaves none of
 * zz_alloc's memory locked or mapped (zz_get_stats: cached_bytes 0), so
 * other users of RLIMIT_MEMLOCK in the process (OpenSSL's secure heap,
 * libsodium, mlock) get the whole limit.  The decay (zz_set_cache_decay_ms)
 * needs calls into the library to act; zz_trim is the explicit way, for
 * example before a long idle period.  Arenas keep their chunks (free them
 * with zz_arena_destroy).  The next allocations map (and lock) afresh.
 * Thread-safe; not async-signal-safe.  Preserves errno. */
ZZ_EXPORT void zz_trim(void);

/* Fills *out for one arena: its live blocks and their bytes (those cached
 * free in threads excluded), and the bytes it has mapped (guard pages
 * included) and locked, its large blocks' own mappings included; the other
 * fields are 0.  Returns 0, or -1 with EINVAL for a NULL arena or out.
 * Sized like zz_get_stats: the macro passes sizeof(zz_stats) to
 * zz_arena_stats_sized, which also refuses (EINVAL) a size below
 * ZZ_STATS_SIZE_0_1; (zz_arena_stats)(a, out) fills the 0.1 fields only. */
ZZ_EXPORT int zz_arena_stats_sized(zz_arena *a, zz_stats *out, size_t size);
ZZ_EXPORT int (zz_arena_stats)(zz_arena *a, zz_stats *out);
#define zz_arena_stats(a, out) zz_arena_stats_sized((a), (out), sizeof(zz_stats))

/* ------------------------------------------------------------------------ */
/* Lock policy and errors                                      zz_policy(3) */
/* ------------------------------------------------------------------------ */

#define ZZ_LOCK_REQUIRED 0    /* default: a block that cannot be locked is never handed out */
#define ZZ_LOCK_BEST_EFFORT 1 /* hand it out unlocked; zz_info() lacks ZZ_INFO_LOCKED       */

/* Sets the lock policy for allocations made from now on.  The environment
 * variable ZEROIZE_LOCK=best-effort (or =required) sets the initial policy.
 * Returns 0, or -1 with EINVAL for an unknown policy. */
ZZ_EXPORT int zz_set_lock_policy(int policy);

/* The current lock policy. */
ZZ_EXPORT int zz_get_lock_policy(void);

/* A sentence, for a person, that says why the calling thread's last failed
 * call into this library failed and how to fix it (for example which limit to
 * raise with `ulimit -l` or sysctl vm.max_map_count).  Never NULL; an empty
 * string when no call has failed in this thread. */
ZZ_EXPORT const char *zz_last_error(void);

/* Why the calling thread's last failed call failed, as data for programs
 * (zz_last_error() says the same in words for people).  The value stays
 * until the next failure in this thread; successful calls leave it alone, so
 * read it right after a call that returned failure. */
enum zz_error {
    ZZ_ERR_NONE = 0,         /* no call has failed in this thread                */
    ZZ_ERR_MEMLOCK,          /* mlock refused: RLIMIT_MEMLOCK reached, no CAP_IPC_LOCK */
    ZZ_ERR_MAPCOUNT,         /* the kernel refused a mapping: vm.max_map_count or memory */
    ZZ_ERR_NOMEM,            /* the requested size itself is too large           */
    ZZ_ERR_ADVICE,           /* the kernel lacks MADV_DONTDUMP or MADV_WIPEONFORK */
    ZZ_ERR_ARGUMENT,         /* an invalid argument                              */
    ZZ_ERR_ARENA_FULL,       /* a fixed-capacity arena has no room               */
    ZZ_ERR_SECRETMEM,        /* memfd_secret is refused or missing               */
    ZZ_ERR_RANDOM,           /* getrandom failed: no canary key                  */
    ZZ_ERR_ARENA_BLOCK,      /* larger than an arena block may be                */
    ZZ_ERR_UNMAPPED,         /* zz_lock of memory that is not mapped             */
    ZZ_ERR_SECRETMEM_LIMIT,  /* memfd_secret refused for RLIMIT_MEMLOCK          */
    ZZ_ERR_ARENA_UNFIT,      /* a fixed arena's memory no longer meets its promises */
    ZZ_ERR_NOACCESS          /* zz_realloc of a block in ZZ_NOACCESS mode (EACCES) */
};

/* The zz_error of the calling thread's last failed call (ZZ_ERR_NONE if none
 * has failed).  ZZ_ERR_MEMLOCK and ZZ_ERR_SECRETMEM_LIMIT are the ones a
 * larger RLIMIT_MEMLOCK (`ulimit -l`) or CAP_IPC_LOCK cures. */
ZZ_EXPORT int zz_last_error_code(void);

/* ------------------------------------------------------------------------ */
/* Purge: wipe every secret at once                             zz_purge(3) */
/* ------------------------------------------------------------------------ */

/* Wipes the contents of every live block (zz_alloc and arenas).  The blocks
 * stay valid, read as zero, and can be freed as usual.
 * Async-signal-safe: takes no lock, calls no malloc and no stdio.  May run
 * while other threads allocate and free: every block that was live before the
 * call began and is still live when it ends is wiped; a block allocated or
 * freed while it runs may or may not be wiped; nothing crashes and no canary
 * is reported corrupted because of it. */
ZZ_EXPORT void zz_purge(void);

/* Installs a handler for each of the count signals that calls zz_purge(),
 * then hands the signal on: to the handler that was installed before (which
 * runs after the purge), or, if there was none, to the default action, so the
 * process still dies of the same signal and dumps core if it would have.
 * Ours is installed with the earlier handler's own mask and flags, so that
 * one runs as it would have alone: on the alternate signal stack if it had
 * SA_ONSTACK (a SIGSEGV handler that catches stack overflow keeps working),
 * with its mask blocked, SA_RESETHAND, SA_NODEFER and SA_RESTART honoured,
 * called in its own form (sa_handler or sa_sigaction).  With no earlier
 * handler, ours runs on the alternate stack when the thread has one.
 * Calling it again for a signal whose handler is ours changes nothing; for
 * one whose handler you replaced since, it chains to yours.  A signal that
 * arrives while the chain is being rewritten sees the old or the new chain,
 * never a mix, and the handler it reaches runs with its own mask blocked
 * (and, then, perhaps also the mask of the handler it replaced).
 * Returns 0, or -1 with errno (EINVAL for a signal that cannot be caught). */
ZZ_EXPORT int zz_purge_on_signals(const int *signals, size_t count);

/* ------------------------------------------------------------------------ */
/* Backends: where new memory comes from                       zz_policy(3) */
/* ------------------------------------------------------------------------ */

/* Where new blocks and arena chunks live. */
#define ZZ_BACKEND_ANON 0      /* default: private anonymous memory                        */
#define ZZ_BACKEND_SECRETMEM 1 /* memfd_secret(2): removed from the kernel's direct map, so
                                  neither /proc/PID/mem, process_vm_readv, ptrace peeks nor a
                                  kernel bug reading physical memory through the direct map
                                  reach it.  Linux 5.14+ (on by default from 6.5).          */
#define ZZ_BACKEND_AUTO 2      /* secretmem where the kernel has it, else anon             */

/* Chooses the backend for memory mapped from now on (existing blocks stay
 * where they are; an arena keeps the backend it was created with).  The
 * environment variable ZEROIZE_BACKEND=anon|secretmem|auto sets the initial
 * choice.  zz_info() reports ZZ_INFO_SECRETMEM on blocks that live there.
 * Returns 0, or -1 with EINVAL for an unknown backend.
 *
 * What changes with secretmem (all measured on Linux 6.18):
 *   - the kernel cannot copy from or pin these pages: read(2)/write(2) into
 *     and out of them work, but O_DIRECT I/O, vmsplice, process_vm_readv and
 *     /proc/PID/mem fail (EFAULT/EIO);
 *   - pages are locked by the kernel and the whole mapping, guard pages
 *     included, counts against RLIMIT_MEMLOCK from the moment it is mapped;
 *   - MADV_WIPEONFORK is not available: the pages are MADV_DONTFORK instead,
 *     and a fork handler maps fresh zero pages at the same addresses in the
 *     child, so a child still reads zeros and never shares the parent's pages;
 *     there those blocks no longer carry ZZ_INFO_SECRETMEM.  zz_info() reports
 *     ZZ_INFO_WIPEONFORK, which promises what a child sees, not the advice
 *     (/proc/PID/smaps shows "dc", not "wf").  After a fork that runs no
 *     atfork handler (_Fork()), the pages are absent in the child until its
 *     first call into the library maps the zeros: a read before then faults;
 *   - guard pages are PROT_NONE pages (two VMAs per slot), as MADV_GUARD_INSTALL
 *     is refused on secretmem.
 * With ZZ_BACKEND_SECRETMEM, a kernel without memfd_secret makes allocations
 * fail (ENOSYS, EPERM under seccomp...): nothing silently falls back.  With
 * ZZ_BACKEND_AUTO it falls back to anon, and zz_info() tells. */
ZZ_EXPORT int zz_set_backend(int backend);

/* The backend set by zz_set_backend or ZEROIZE_BACKEND. */
ZZ_EXPORT int zz_get_backend(void);

/* zz_alloc on the given backend, whatever the process-wide choice (for a
 * program that wants only some secrets in secretmem).  EINVAL for an unknown
 * backend; otherwise as zz_alloc.  Free with zz_free. */
ZZ_EXPORT ZZ_MALLOC_LIKE void *zz_alloc_backend(size_t n, int backend);

/* ------------------------------------------------------------------------ */
/* Process hardening                                           zz_policy(3) */
/* ------------------------------------------------------------------------ */

#define ZZ_HARDEN_NO_CORE   0x01u /* RLIMIT_CORE soft limit 0 (hard limit untouched) */
#define ZZ_HARDEN_NO_PTRACE 0x02u /* prctl(PR_SET_DUMPABLE, 0)                       */

/* Opt-in process hardening; the library never changes process-wide policy
 * unless this is called.  Returns 0, or -1 with errno (EINVAL for unknown
 * flags). */
ZZ_EXPORT int zz_harden_process(unsigned flags);

#ifdef __cplusplus
}
#endif

#endif /* ZEROIZE_H */
