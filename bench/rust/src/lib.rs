//! C entry point for the `zeroize` crate's slice wipe.
//!
//! `no_std` keeps the static library free of Rust's std runtime, so the C
//! benchmark links it without pulling in libgcc_s, libdl and friends.
#![no_std]

use zeroize::Zeroize;

/// Wipes `n` bytes at `p` exactly as a Rust program would wipe a `&mut [u8]`
/// secret with `secret.zeroize()`.
///
/// # Safety
/// `p` must be valid for writes of `n` bytes (or `n` must be 0).
#[no_mangle]
pub unsafe extern "C" fn rust_zeroize_wipe(p: *mut u8, n: usize) {
    if n == 0 || p.is_null() {
        // from_raw_parts_mut requires a non-null pointer even for length 0.
        return;
    }
    core::slice::from_raw_parts_mut(p, n).zeroize();
}

#[panic_handler]
fn on_panic(_info: &core::panic::PanicInfo) -> ! {
    // panic = "abort" in the release profile; nothing here can panic except
    // the crate's own isize::MAX length assertion, which C callers never hit.
    loop {}
}
