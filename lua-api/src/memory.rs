//! A VM's memory: its own allocator, its bound, and what happens after an
//! allocation fails, so that no Lua allocation can take the process down.
//!
//! mlua's allocator calls `handle_alloc_error` (an abort) when the system
//! allocator returns null. Protocol:
//! 1. Once a VM is built, [`VmMemory::install`] replaces mlua's allocator
//!    with [`allocate`] (`lua_setallocf`), over the same blocks: both use
//!    `std::alloc` with mlua's alignment, so each frees what the other
//!    allocated. Before that it gives mlua a (never reached) memory limit,
//!    which makes mlua protect its own API calls against memory errors.
//! 2. [`allocate`] refuses growth past the VM's bound, and turns a null
//!    from the system into a refusal too: Lua then raises "not enough
//!    memory" in the code that allocated (after one emergency collection),
//!    which ends that session or is caught by its `pcall`.
//! 3. A refusal by the system means the process is near its limit. The
//!    allocator then gives back the [`reserve`] (address space held aside
//!    for this moment), so the rest of the process has room to unwind, log
//!    and collect, and marks the VM *starved*: every growth of that VM
//!    fails until the scheduler reclaims it.
//! 4. After a slice in which an allocation failed (or that the monitor
//!    interrupted) the scheduler calls [`VmMemory::reclaim`]: a full
//!    collection of that VM, then the C allocator gives freed memory back to
//!    the system (`malloc_trim`), and the reserve is taken again.
//! 5. Before the `Lua` is dropped [`VmMemory::uninstall`] puts mlua's
//!    allocator back, which frees everything when the VM closes.

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use mlua::{ffi, Lua};

/// A VM's accounts, touched by [`allocate`] on the thread that runs the VM
/// (a VM runs on one thread at a time).
#[derive(Default)]
struct Budget {
    /// Bytes of live blocks.
    used: Cell<usize>,
    /// Bound on `used` (0: none).
    limit: Cell<usize>,
    /// An allocation was refused since the scheduler last looked (step 4).
    failed: Cell<bool>,
    /// The system refused one: refuse every growth until reclaimed (step 3).
    starved: Cell<bool>,
}

/// Step 2: the `lua_Alloc` of every lunet VM.
unsafe extern "C" fn allocate(
    ud: *mut c_void,
    block: *mut c_void,
    old_size: usize,
    new_size: usize,
) -> *mut c_void {
    // SAFETY: `ud` is the `Budget` that `install` boxed for this VM and
    // that outlives the allocator's installation (`uninstall`).
    let budget = unsafe { &*(ud as *const Budget) };
    // With a null block, `old_size` is a type tag, not a size.
    let old = if block.is_null() { 0 } else { old_size };
    if new_size == 0 {
        if !block.is_null() {
            // SAFETY: Lua frees a block it got from this allocator (or
            // mlua's, which allocates the same way) with its size.
            unsafe { alloc::dealloc(block.cast(), layout(old)) };
            budget.used.set(budget.used.get() - old);
        }
        return ptr::null_mut();
    }
    if new_size > isize::MAX as usize / 2 {
        budget.failed.set(true);
        return ptr::null_mut();
    }
    if new_size > old {
        let limit = budget.limit.get();
        if budget.starved.get() || (limit > 0 && budget.used.get() + (new_size - old) > limit) {
            budget.failed.set(true);
            return ptr::null_mut();
        }
    }
    // SAFETY: sizes are non-zero and below isize::MAX; a block is resized
    // with the layout it was allocated with.
    let moved = unsafe {
        if block.is_null() {
            alloc::alloc(layout(new_size))
        } else {
            alloc::realloc(block.cast(), layout(old), new_size)
        }
    };
    if moved.is_null() {
        if new_size <= old {
            // Lua assumes a block never fails to shrink: keep the larger
            // block (the C allocators behind std::alloc free by pointer).
            budget.used.set(budget.used.get() - (old - new_size));
            return block;
        }
        budget.failed.set(true);
        budget.starved.set(true);
        reserve::release();
        return ptr::null_mut();
    }
    budget.used.set(budget.used.get() - old + new_size);
    moved.cast()
}

fn layout(size: usize) -> Layout {
    // SAFETY: mlua's alignment is a power of two and sizes stay far below
    // isize::MAX (checked above), as mlua's own allocator assumes.
    unsafe { Layout::from_size_align_unchecked(size, ffi::SYS_MIN_ALIGN) }
}

/// Why the allocator could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install lunet's allocator: {0}")]
pub struct InstallError(#[from] mlua::Error);

/// A VM's allocator and bound (see the module header).
pub struct VmMemory {
    budget: Box<Budget>,
    /// mlua's allocator and its data, put back by `uninstall`.
    previous: (ffi::lua_Alloc, *mut c_void),
    uninstalled: Cell<bool>,
}

impl Drop for VmMemory {
    fn drop(&mut self) {
        if !self.uninstalled.get() {
            // The VM may still close with this allocator: its data must
            // outlive it (a bug elsewhere costs a few bytes, not memory
            // safety).
            let budget = std::mem::take(&mut self.budget);
            Box::leak(budget);
        }
    }
}

// SAFETY: the budget is touched only by the thread that runs the VM (the
// allocator, the scheduler); the VM and this move between threads together.
unsafe impl Send for VmMemory {}

impl VmMemory {
    /// Step 1.
    pub fn install(lua: &Lua) -> Result<VmMemory, InstallError> {
        reserve::take();
        // A limit makes mlua guard its API calls against memory errors;
        // this one is never reached (it is mlua's allocator's, gone below).
        lua.set_memory_limit(usize::MAX / 4)?;
        let budget = Box::new(Budget::default());
        budget.used.set(lua.used_memory());
        let ud = &*budget as *const Budget as *mut c_void;
        let mut previous = None;
        // SAFETY: lua_getallocf and lua_setallocf act on the VM's global
        // state; the new allocator frees and resizes the old one's blocks
        // (step 1), and its data lives in `budget` until `uninstall`.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                let mut data = ptr::null_mut();
                let function = ffi::lua_getallocf(state, &mut data);
                previous = Some((function, data));
                ffi::lua_setallocf(state, allocate, ud);
            })?;
        }
        let previous =
            previous.ok_or_else(|| mlua::Error::runtime("the allocator exchange did not run"))?;
        Ok(VmMemory {
            budget,
            previous,
            uninstalled: Cell::new(false),
        })
    }

    /// Step 5: mlua's allocator again (call before the `Lua` is dropped).
    pub fn uninstall(&self, lua: &Lua) {
        self.budget.starved.set(false);
        self.budget.limit.set(0);
        let (function, data) = self.previous;
        // SAFETY: as in `install`; after this the budget is no longer used.
        let restored =
            unsafe { lua.exec_raw::<()>((), |state| ffi::lua_setallocf(state, function, data)) };
        self.uninstalled.set(restored.is_ok());
    }

    /// Bounds the VM at `bytes` beyond what it uses now (`None`: no bound).
    pub fn limit_from_now(&self, bytes: Option<usize>) {
        let limit = bytes.map_or(0, |bytes| self.budget.used.get().saturating_add(bytes));
        self.budget.limit.set(limit);
    }

    /// Bytes the VM holds now.
    pub fn used(&self) -> usize {
        self.budget.used.get()
    }

    /// True once after an allocation was refused (step 4).
    pub fn take_failure(&self) -> bool {
        self.budget.failed.replace(false)
    }

    /// Step 4: collects the VM in full and gives freed memory back to the
    /// system.
    pub fn reclaim(&self, lua: &Lua) {
        let before = self.used();
        self.budget.starved.set(false);
        // Twice: the first cycle runs finalizers, the second frees what
        // they released.
        let _ = lua.gc_collect();
        let _ = lua.gc_collect();
        give_back();
        reserve::take();
        tracing::info!(
            "after a failed allocation or an interrupt: collected the VM from {} to {} KiB",
            before / 1024,
            self.used() / 1024
        );
    }
}

/// Returns the C allocator's free memory to the system.
fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Address space held aside for the moment the system refuses memory
/// (step 3): an inaccessible mapping, which costs no RAM but counts
/// against `RLIMIT_AS`, the limit that makes allocations fail first.
mod reserve {
    use std::ffi::c_void;
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, Ordering};

    /// Enough for the unwinding, the log lines and the collection of a
    /// failed VM, and for the other threads' allocations meanwhile.
    const BYTES: usize = 64 * 1024 * 1024;

    static HELD: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

    /// Takes the reserve if it is not held (it may fail: then later).
    pub(super) fn take() {
        if !HELD.load(Ordering::Acquire).is_null() {
            return;
        }
        // SAFETY: an anonymous, inaccessible private mapping; nothing is
        // read or written through it.
        let mapping = unsafe {
            libc::mmap(
                ptr::null_mut(),
                BYTES,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return;
        }
        if HELD
            .compare_exchange(
                ptr::null_mut(),
                mapping,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // SAFETY: our own mapping, never published.
            unsafe { libc::munmap(mapping, BYTES) };
        }
    }

    /// Gives the reserve back to the system. Safe to call from an
    /// allocator: no allocation, no lock.
    pub(super) fn release() {
        let mapping = HELD.swap(ptr::null_mut(), Ordering::AcqRel);
        if !mapping.is_null() {
            // SAFETY: the mapping `take` made; swapped out, so unmapped once.
            unsafe { libc::munmap(mapping, BYTES) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_fails_the_allocation_and_the_vm_lives_on() {
        let lua = Lua::new();
        let memory = VmMemory::install(&lua).unwrap();
        memory.limit_from_now(Some(1024 * 1024));
        let error = lua
            .load("local t = {} for i = 1, 1e7 do t[i] = ('x'):rep(100) .. i end")
            .exec()
            .unwrap_err();
        assert!(error.to_string().contains("not enough memory"), "{error}");
        assert!(memory.take_failure());
        assert!(!memory.take_failure(), "reported once");
        memory.reclaim(&lua);
        assert!(memory.used() < 512 * 1024, "collected: {}", memory.used());
        assert_eq!(lua.load("return 6 * 7").eval::<i64>().unwrap(), 42);
        memory.uninstall(&lua);
        drop(lua);
    }

    #[test]
    fn a_refusal_of_the_system_is_an_error_too_until_the_vm_is_reclaimed() {
        let lua = Lua::new();
        let memory = VmMemory::install(&lua).unwrap();
        let ud = &*memory.budget as *const Budget as *mut c_void;
        // SAFETY: a direct call of the installed allocator, as Lua makes
        // them; no system can give a block of 2^60 bytes.
        let block = unsafe { allocate(ud, ptr::null_mut(), 0, 1 << 60) };
        assert!(block.is_null());
        assert!(
            memory.budget.starved.get(),
            "starved after the system refused"
        );
        let error = lua.load("return ('y'):rep(1000)").exec().unwrap_err();
        assert!(error.to_string().contains("not enough memory"), "{error}");
        assert!(memory.take_failure());
        memory.reclaim(&lua);
        assert_eq!(
            lua.load("return #('y'):rep(1000)").eval::<i64>().unwrap(),
            1000
        );
        memory.uninstall(&lua);
    }
}
