//! The synchronization primitives of the parking protocol (`idle.rs`), and
//! of the shutdown flag it reads, swapped for loom's when the protocol is
//! model-checked (`RUSTFLAGS="--cfg loom"` test builds, see `loom_idle.rs`).
//! Nothing else in the crate uses loom's types: under `--cfg loom` only the
//! model runs.

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(all(test, loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(all(test, loom))]
pub(crate) use loom::thread;

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(all(test, loom)))]
pub(crate) use std::thread;
