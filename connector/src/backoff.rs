//! Reconnect back-off, for the built-in profiles and for scripts alike.
//!
//! A connection that is lost before it completed a request (a refused
//! connect, a server that closes at once, a script handler that fails
//! straight away) waits before it connects again: [`FIRST`], then twice as
//! long each time in a row, up to [`MAX`]. One completed request resets
//! it, so a server that answers and then closes (HTTP `Connection: close`)
//! is reconnected at once, as before. Each wait is drawn between half and
//! all of its step, so connections that failed together do not come back
//! together.

use std::time::Duration;

use crate::protocol::Rng;

/// The first wait: short enough that a server restarting mid-run is found
/// again at once, long enough that a dead one costs no busy loop.
pub const FIRST: Duration = Duration::from_millis(10);
/// The longest wait: a dead server costs about one connect per second per
/// connection, and a revived one is found within a second.
pub const MAX: Duration = Duration::from_secs(1);

/// One connection's failures in a row.
#[derive(Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The connection completed a request: the next failure starts afresh.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// One more failure in a row: how long to wait before connecting again.
    pub fn next(&mut self, rng: &mut Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        delay(self.failures, rng)
    }
}

/// The wait after `failures` failures in a row (1 or more).
pub fn delay(failures: u32, rng: &mut Rng) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let step = FIRST.saturating_mul(1 << doublings).min(MAX);
    // Half of the step, plus a random part of the other half.
    let half = step / 2;
    let nanos = half.as_nanos() as u64;
    half + Duration::from_nanos(rng.below(nanos.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_bound_and_resets() {
        let mut rng = Rng::new(1);
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next(&mut rng)).collect();
        assert!(waits[0] >= FIRST / 2 && waits[0] <= FIRST);
        assert!(waits[3] >= FIRST * 4 && waits[3] <= FIRST * 8);
        assert!(waits.iter().all(|w| *w <= MAX));
        assert!(waits[11] >= MAX / 2);
        backoff.reset();
        assert!(backoff.next(&mut rng) <= FIRST);
    }
}
