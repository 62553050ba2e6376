//! The allocator of Rust and of every Lua VM (`lua-api/src/memory.rs`
//! allocates through `std::alloc`), chosen by measurement
//! (`bench/allocator.sh`, docs/internals.md "Memory that comes back").
//!
//! glibc's malloc by default, with one change: blocks of `MMAP_THRESHOLD`
//! and more are always their own mappings, so freeing one gives its memory
//! back to the system at once. glibc raises that threshold by itself each
//! time such a block is freed (up to 32 MiB), after which large values live
//! in the heap and the RSS they leave stays: a RESP run with 1 MiB values
//! kept 43 MB of 54 after FLUSHALL, 18 MB with the threshold fixed.
//! mimalloc (`--features mimalloc`) kept more (87 of 101 MB) on that run.

/// Blocks this large or larger are mapped on their own (glibc's default
/// before it adjusts it).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the allocator up; call before any thread starts. Whoever sets
/// glibc's malloc up through its environment (`GLIBC_TUNABLES`,
/// `MALLOC_MMAP_THRESHOLD_`, ...) keeps their settings: nothing is changed.
pub fn set_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    {
        let configured = std::env::vars_os().any(|(name, _)| {
            let name = name.to_string_lossy();
            name == "GLIBC_TUNABLES" || (name.starts_with("MALLOC_") && name.ends_with('_'))
        });
        if !configured {
            // SAFETY: mallopt only sets a malloc parameter; no thread is
            // allocating concurrently yet.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}
