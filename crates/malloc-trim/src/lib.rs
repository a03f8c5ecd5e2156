//! Gives the system back the memory glibc's allocator holds free.
//!
//! glibc returns freed memory only from the top of each arena: after a burst
//! of connections closes, the pages below the last live allocation stay
//! resident (a proxy that held 10,000 tunnels kept their ~150 MB after they
//! closed). `malloc_trim(0)` walks every arena and gives back each free
//! page (`madvise(MADV_DONTNEED)`), live allocations untouched.
//!
//! This is a crate of its own so that Gatehouse's crates keep
//! `forbid(unsafe_code)`: the one unsafe call is here, and takes no pointer.

/// Asks glibc to give back the free pages of every arena; whether it gave
/// any back. Elsewhere (musl, other systems) it does nothing and says false.
///
/// glibc locks each arena in turn while it walks it: call it after a burst,
/// not on every request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc
    // serialises it with every other allocator call on the arena it walks.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Asks the allocator to give back free memory: not glibc, nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn trims_after_a_free() {
        // A large block then a small live one above it: freeing the large one
        // leaves free pages below a live allocation, which only a trim gives
        // back. Whether glibc reports giving any back depends on the heap's
        // shape; the call must simply be safe and answer.
        let big = vec![1u8; 8 << 20];
        let small = vec![2u8; 64];
        drop(big);
        let _ = super::trim();
        assert_eq!(small[0], 2);
    }
}
