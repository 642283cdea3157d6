# Tests for arenas, zz_purge, zz_purge_on_signals, zz_realloc /
# zz_alloc_aligned, zz_harden_process and the memfd_secret backend.
# Included at the end of tests/CMakeLists.txt, so zz_add_test, zz_test_target
# and ZZ_TEST_ENV are in scope.
#
# Some programs hold a second group of tests that must not run by default (a
# stress test whose races are intended, a test that maps 100,000 secrets):
# such a program runs its default group without arguments and the named group
# when given its name as argv[1].

# zz_add_test_group(<program> <group> [LABELS l...] [TIMEOUT s])
# Registers "<program> <group>" for both guard paths, like zz_add_test.
function(zz_add_test_group prog group)
  cmake_parse_arguments(T "" "TIMEOUT" "LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${prog}_${group} COMMAND ${prog} ${group})
  add_test(NAME ${prog}_${group}_mprotect COMMAND ${prog} ${group})
  set_tests_properties(${prog}_${group} PROPERTIES
    LABELS "guard-default;${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${ZZ_TEST_ENV}")
  set_tests_properties(${prog}_${group}_mprotect PROPERTIES
    LABELS "guard-mprotect;${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${ZZ_TEST_ENV};ZEROIZE_GUARDS=mprotect")
endfunction()

# Death tests (forked children that must abort with one exact line) carry the
# "death" label, so `ctest -T memcheck -LE 'death|slow'` leaves them out.
zz_add_test(test_arena LABELS death threads)
zz_add_test(test_arena_threads LABELS threads)
# A growable arena fills RLIMIT_MEMLOCK with secrets (issue 18), unprivileged.
zz_add_test(test_arena_budget)
zz_add_test(test_realloc LABELS death)
zz_add_test(test_purge LABELS death)
zz_add_test(test_signals LABELS death)
zz_add_test(test_harden)
zz_add_test(test_secretmem LABELS death)

# zz_purge from a 1 ms SIGALRM while four threads allocate and free.  The
# purge writes zeros into blocks other threads are using: that race is the
# documented behaviour, so the thread sanitizer's reports about it are
# expected ("nosan").
zz_add_test_group(test_purge stress LABELS threads nosan TIMEOUT 300)

# Two threads freeing one arena block at once (a death test, kept apart so
# that memcheck runs the rest of test_arena_threads).
zz_add_test_group(test_arena_threads misuse LABELS death threads)

# 100,000 live secretmem blocks (arena) and as many zz_alloc secretmem blocks
# as vm.max_map_count allows.
zz_add_test_group(test_secretmem scale LABELS slow TIMEOUT 600)

# Regression tests of issue 11 that have no older home.  test_canary reads
# canaries on purpose (an attacker's out-of-bounds read), which memcheck would
# report: it carries "death" like the other misuse programs.
zz_add_test(test_canary LABELS death)
zz_add_test(test_fatal LABELS death)
zz_add_test(test_names)
zz_add_test(test_fork_hooks)
# Forks that run no atfork handler (_Fork) while threads hold the library's locks
# or purge (issue 19): children checked by exit status, under alarm().
zz_add_test(test_fork_missed TIMEOUT 300)
zz_add_test_group(test_fork_missed rebuild LABELS slow nosan TIMEOUT 300)
zz_add_test_group(test_fork_missed arena-large LABELS slow nosan TIMEOUT 300)
# The program's own atfork handlers calling the library (issue 19): death tests
# for handlers registered before the library's.
zz_add_test(test_fork_atfork LABELS death)

# zz_purge (from a thread, and from a 100 us SIGALRM on the same thread)
# racing zz_arena_destroy (issue 11, defect 1).  Nothing crashes on purpose,
# so memcheck runs it too (its timer is slower there).  Not "threads": the
# purging thread wipes blocks while the other allocates them, the documented
# race that the thread sanitizer reports (see the stress group); ASan and
# memcheck run it.
zz_add_test_group(test_purge teardown TIMEOUT 300)
# zz_purge from a thread while another makes the library's first call: no
# block is live, so the thread sanitizer sees only the set-up's publication.
zz_add_test_group(test_purge first_use LABELS threads TIMEOUT 120)

# The header's attributes (warn_unused_result on zz_realloc, nonnull where a
# NULL is a bug): each snippet in header/ but null_allowed.c must fail to
# compile with -Werror; null_allowed.c, which passes only documented NULLs,
# must compile.  GCC and Clang only: the attributes are empty elsewhere.
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  foreach(_zz_snippet realloc_result_dropped protect_null stats_null null_allowed)
    add_test(NAME header_${_zz_snippet}
      COMMAND ${CMAKE_C_COMPILER} -std=c11 -Wall -Wextra -Werror -c
              -o ${CMAKE_CURRENT_BINARY_DIR}/header_${_zz_snippet}.o
              -I${PROJECT_SOURCE_DIR}/include
              ${CMAKE_CURRENT_SOURCE_DIR}/header/${_zz_snippet}.c)
    # Fails for the attribute's reason, not any (a missing header would do):
    # GCC says [-Werror=nonnull], Clang [-Werror,-Wnonnull].
    # Label compile: valgrind memcheck has nothing to check in a compiler.
    set_tests_properties(header_${_zz_snippet} PROPERTIES LABELS compile)
    if(_zz_snippet STREQUAL "realloc_result_dropped")
      set_tests_properties(header_${_zz_snippet} PROPERTIES
        PASS_REGULAR_EXPRESSION "-Werror(=|,-W)unused-result")
    elseif(NOT _zz_snippet STREQUAL "null_allowed")
      set_tests_properties(header_${_zz_snippet} PROPERTIES
        PASS_REGULAR_EXPRESSION "-Werror(=|,-W)nonnull")
    endif()
  endforeach()
endif()

# src/ calls itself in layers (src/internal.h's top comment): no file uses a
# function or variable of a higher layer, and the modules form no cycle.
# Reads the object files with nm.
if(CMAKE_NM)
  add_test(NAME src_layers
    COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tools/check_layers.py ${CMAKE_NM}
            $<TARGET_OBJECTS:zeroize_objects>
    COMMAND_EXPAND_LISTS)
  # ... and the check itself fails on an upward call and on a cycle.
  add_test(NAME src_layers_selftest
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/layers/selftest.sh ${CMAKE_C_COMPILER} ${CMAKE_NM}
            ${CMAKE_CURRENT_BINARY_DIR}/layers-selftest)
endif()

# No rep-prefixed string instruction (rep stos / movs / cmps / scas) in the
# library's code but in the few functions that only clear or copy its own
# bookkeeping (issue 18: on Intel Xeon a short rep stos that ends at a guard
# page costs ~140 ns, and every small block ends at one).  Disassembles this
# build's objects and builds of src/*.c with gcc and clang at -O2 and -O3.
find_program(ZZ_OBJDUMP NAMES objdump)
if(ZZ_OBJDUMP AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64"
   AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  set(_zz_string_ops_cc "")
  foreach(_zz_cc gcc clang)
    find_program(ZZ_CC_${_zz_cc} ${_zz_cc})
    if(ZZ_CC_${_zz_cc})
      list(APPEND _zz_string_ops_cc --cc ${ZZ_CC_${_zz_cc}})
    endif()
  endforeach()
  set(_zz_string_ops_flags --flag=-I${PROJECT_SOURCE_DIR}/include)
  if(ZZ_HAVE_MEMCHECK_H)
    list(APPEND _zz_string_ops_flags --flag=-DZZ_VALGRIND=1)
  endif()
  add_test(NAME src_no_string_ops
    COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tools/check_string_ops.py
            --src ${PROJECT_SOURCE_DIR}/src --scratch ${CMAKE_CURRENT_BINARY_DIR}/string-ops
            --objdump ${ZZ_OBJDUMP} ${_zz_string_ops_cc} ${_zz_string_ops_flags}
            $<TARGET_OBJECTS:zeroize_objects>
    COMMAND_EXPAND_LISTS)
  # 88 compilations: about 20 s of CPU, minutes of wall time on a loaded machine
  set_tests_properties(src_no_string_ops PROPERTIES LABELS compile TIMEOUT 900)
endif()
