//! The runtime's clock: monotonic milliseconds, the unit of timers, turn
//! stamps and deadlines everywhere in lunet.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Monotonic milliseconds since the process first read this clock.
pub fn now_ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}
