//! The allocator of Rust and of every Lua VM (`lua-api/src/memory.rs`
//! allocates through `std::alloc`), chosen by measurement
//! (`bench/allocator.sh`, docs/internals.md "Memory that comes back").
//!
//! glibc's malloc, and a thread that gives freed memory back: once a second
//! it reads how much the heap holds in use (`mallinfo2`), and when that
//! fell by `TRIM_AFTER_FREED` or more since the last look (a large value
//! deleted, a burst of connections gone), it calls `malloc_trim(0)`, which
//! returns the free pages inside the heap too. Without it glibc keeps them:
//! a large block it once mapped on its own raises its mapping threshold, so
//! later large values live in the heap, and their freed pages stay
//! resident (a RESP run with 1 MiB values kept 35 MB of 66 after
//! FLUSHALL).
//!
//! Measured and not taken (`bench/results/allocator-*.md`): a fixed mapping
//! threshold (`M_MMAP_THRESHOLD`, every large block its own mapping) gave
//! the memory back at once but served 256 KiB values at 0.3-0.7x the
//! rate (a mapping, its page faults and its unmapping per block); mimalloc
//! (`--features mimalloc`) kept more (77 of 80 MB after FLUSHALL: it
//! purges when it allocates or frees, and an idle server does neither).

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
use std::time::Duration;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the heap's in-use bytes must have fallen by for a trim.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
const TRIM_AFTER_FREED: usize = 8 * 1024 * 1024;
/// How often the trimming thread looks.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Starts the trimming thread (glibc builds only), unless malloc is set
/// up through the environment (`GLIBC_TUNABLES`, `MALLOC_ARENA_MAX_`, ...):
/// whoever does that keeps malloc as they set it. The thread blocks every
/// signal: SIGINT, SIGTERM and SIGHUP are taken by `signals.rs`'s thread.
pub fn set_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    {
        let configured = std::env::vars_os().any(|(name, _)| {
            let name = name.to_string_lossy();
            name == "GLIBC_TUNABLES" || (name.starts_with("MALLOC_") && name.ends_with('_'))
        });
        if configured {
            return;
        }
        let started = std::thread::Builder::new()
            .name("lunet-trim".into())
            .spawn(|| {
                crate::signals::block_all();
                trim_when_freed()
            });
        if let Err(e) = started {
            // The server works without it; it only keeps freed memory.
            eprintln!("lunet: cannot start the memory trimming thread: {e}");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn trim_when_freed() {
    let mut high = heap_in_use();
    loop {
        std::thread::sleep(TRIM_EVERY);
        let now = heap_in_use();
        if high.saturating_sub(now) >= TRIM_AFTER_FREED {
            // SAFETY: malloc_trim has no preconditions.
            unsafe {
                libc::malloc_trim(0);
            }
            high = now;
        } else {
            high = high.max(now);
        }
    }
}

/// Bytes in use in malloc's heaps (not its own mappings: those go back to
/// the system when freed).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 has no preconditions; it returns a plain struct.
    unsafe { libc::mallinfo2() }.uordblks
}
