//! A hierarchical timer wheel with 1 ms resolution, owned by the reactor.
//!
//! The reactor is the only thread that touches the wheel, so there is no
//! locking inside: other threads hand their timers to the reactor through its
//! queue (see `shared/DESIGN.md`). The design follows tokio's
//! `runtime/time/wheel`.
//!
//! # Layout
//!
//! The wheel keeps `elapsed`, the time it has been advanced to, and six
//! levels of 64 slots each. A slot of level `L` spans `64^L` ms, so level 0
//! holds single milliseconds, level 1 spans of 64 ms, ... level 5 spans of
//! `2^30` ms; together the levels cover `2^36` ms (about 795 days) ahead of
//! `elapsed`. Every level has an `occupied` bitmask with one bit per
//! non-empty slot, so finding the next non-empty slot is a `trailing_zeros`
//! per level, never a walk over empty milliseconds.
//!
//! # Protocol
//!
//! 1. **Placement.** A timer with deadline `d > elapsed` goes to the level
//!    of the highest bit in which `d` and `elapsed` differ (bits grouped by
//!    six), in the slot named by `d`'s six bits of that level. So a timer of
//!    level `L` agrees with `elapsed` on every bit above level `L`, and its
//!    level-`L` digit is greater than `elapsed`'s. Consequently every timer
//!    of level `L` is due before every timer of level `L + 1`.
//! 2. **Out of range.** A deadline that differs from `elapsed` above bit 36
//!    goes to the `overflow` list. A deadline at or before `elapsed` goes to
//!    the `pending` list and fires on the next [`TimerWheel::advance`].
//! 3. **Next expiration.** The next point in time the wheel must act on is
//!    the start of the first occupied slot of the lowest non-empty level
//!    (by 1., nothing in higher levels can be due earlier). If all levels
//!    are empty but `overflow` is not, it is the start of the `2^36` ms
//!    span holding the earliest overflow deadline (so a timer years away
//!    costs one step, not one per span).
//! 4. **Advance.** While that point is `<= now`: set `elapsed` to it, empty
//!    the slot (or the overflow list) and re-place each timer. A timer whose
//!    deadline equals the new `elapsed` is expired; any other lands in a
//!    lower level (the cascade), because it now agrees with `elapsed` on the
//!    bits of the level it came from. Finally `elapsed = now`. This keeps
//!    the invariant of 1.: no occupied slot starts at or before `elapsed`,
//!    because every slot starting at or before `now` was emptied.
//!
//! Each timer is moved at most once per level, and an advance over any gap
//! visits only occupied slots, so its cost is `O(levels * (timers moved + 1))`
//! whatever the length of the gap.
//!
//! # Order of expiry
//!
//! `advance` yields timers ordered by deadline. Timers with equal deadlines
//! come out in an unspecified order (usually insertion order, but a timer
//! that cascaded from a higher level is appended after one that was placed
//! in the lower level directly).

/// Bits of the deadline that index one level.
const LEVEL_BITS: u32 = 6;
/// Slots per level: one `u64` occupied bitmask covers a level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Mask for a slot index within a level.
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// Six levels cover `2^36` ms (~795 days): every realistic network timeout
/// fits in the levels; only the absurd goes to the overflow list.
const LEVELS: usize = 6;
/// Span covered by all levels together.
const WHEEL_SPAN: u64 = 1 << (LEVEL_BITS * LEVELS as u32);

/// A hierarchical timer wheel with 1 ms resolution, holding values of `T`.
///
/// Single owner, no locking. Time is a caller-supplied monotonic count of
/// milliseconds; the wheel never reads a clock.
pub struct TimerWheel<T> {
    /// The time the wheel has been advanced to.
    elapsed: u64,
    /// `LEVELS` levels, level 0 first.
    levels: Vec<Level<T>>,
    /// Timers whose deadline was at or before `elapsed` when inserted.
    pending: Vec<(u64, T)>,
    /// The smallest deadline in `pending` (meaningless when it is empty).
    pending_min: u64,
    /// Timers more than the wheel's span away from `elapsed`.
    overflow: Vec<(u64, T)>,
    /// The smallest deadline in `overflow` (meaningless when it is empty).
    overflow_min: u64,
    /// Timers held, in all places.
    len: usize,
}

/// One level of 64 slots.
struct Level<T> {
    /// Bit `i` is set when `slots[i]` is non-empty.
    occupied: u64,
    slots: Vec<Vec<(u64, T)>>,
}

impl<T> Level<T> {
    fn new() -> Self {
        Level {
            occupied: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
        }
    }
}

/// Where the next expiration takes place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Slot { level: usize, slot: usize },
    Overflow,
}

/// The next point in time at which the wheel has work to do.
#[derive(Clone, Copy, Debug)]
struct Expiration {
    location: Location,
    /// Start of the slot: at or before every deadline it holds.
    deadline: u64,
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose current time is `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        TimerWheel {
            elapsed: now_ms,
            levels: (0..LEVELS).map(|_| Level::new()).collect(),
            pending: Vec::new(),
            pending_min: u64::MAX,
            overflow: Vec::new(),
            overflow_min: u64::MAX,
            len: 0,
        }
    }

    /// Adds a timer. A deadline at or before the wheel's current time fires
    /// on the next [`advance`](Self::advance), whatever time that is given.
    pub fn insert(&mut self, deadline_ms: u64, value: T) {
        self.len += 1;
        self.place(deadline_ms, value);
    }

    /// Moves the wheel to `now_ms` and appends every value whose deadline is
    /// `<= now_ms` to `expired`, ordered by deadline.
    ///
    /// Time is monotonic: a `now_ms` smaller than the current time does not
    /// move the wheel back (timers inserted with a past deadline still fire).
    /// Values with equal deadlines come out in an unspecified order.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<T>) {
        if !self.pending.is_empty() {
            // Pending deadlines are all <= elapsed < every deadline in the
            // levels, so they come first. The sort is stable: ties keep
            // insertion order.
            self.pending.sort_by_key(|&(deadline, _)| deadline);
            self.len -= self.pending.len();
            expired.extend(self.pending.drain(..).map(|(_, value)| value));
            self.pending_min = u64::MAX;
        }
        if now_ms <= self.elapsed {
            return;
        }
        while let Some(expiration) = self.next_expiration() {
            if expiration.deadline > now_ms {
                break;
            }
            self.process(expiration, expired);
        }
        self.elapsed = now_ms;
    }

    /// When [`advance`](Self::advance) should next be called: never later
    /// than the earliest pending deadline. It may be earlier (the start of a
    /// higher-level slot, which only cascades timers). `None` when empty.
    ///
    /// A value at or before the current time means "advance now".
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            return Some(self.pending_min);
        }
        self.next_expiration().map(|expiration| expiration.deadline)
    }

    /// The number of timers held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the wheel holds no timer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Puts a timer where it belongs relative to `elapsed` (protocol 1, 2).
    fn place(&mut self, deadline: u64, value: T) {
        if deadline <= self.elapsed {
            self.pending_min = self.pending_min.min(deadline);
            self.pending.push((deadline, value));
            return;
        }
        let level = level_for(self.elapsed, deadline);
        if level >= LEVELS {
            self.overflow_min = self.overflow_min.min(deadline);
            self.overflow.push((deadline, value));
            return;
        }
        let slot = slot_for(deadline, level);
        let level = &mut self.levels[level];
        level.occupied |= 1 << slot;
        level.slots[slot].push((deadline, value));
    }

    /// Protocol 3: the first occupied slot of the lowest non-empty level.
    fn next_expiration(&self) -> Option<Expiration> {
        for (index, level) in self.levels.iter().enumerate() {
            if level.occupied == 0 {
                continue;
            }
            let shift = LEVEL_BITS * index as u32;
            let current = (self.elapsed >> shift) & SLOT_MASK;
            // By the invariant every occupied slot lies strictly after
            // `current`, so the lowest set bit is the next one in time.
            debug_assert_eq!(level.occupied & (u64::MAX << current), level.occupied);
            debug_assert_eq!(level.occupied & (1 << current), 0);
            let slot = u64::from(level.occupied.trailing_zeros());
            let level_span = 1u64 << (shift + LEVEL_BITS);
            let level_start = self.elapsed & !(level_span - 1);
            return Some(Expiration {
                location: Location::Slot {
                    level: index,
                    slot: slot as usize,
                },
                deadline: level_start + (slot << shift),
            });
        }
        if self.overflow.is_empty() {
            return None;
        }
        // Every overflow deadline differs from `elapsed` above the wheel's
        // span and is later, so the span holding the earliest one starts
        // after `elapsed`; from there that timer fits in the levels.
        let span_start = self.overflow_min & !(WHEEL_SPAN - 1);
        debug_assert!(span_start > self.elapsed);
        Some(Expiration {
            location: Location::Overflow,
            deadline: span_start,
        })
    }

    /// Protocol 4: moves to `expiration.deadline` and re-places its timers.
    fn process(&mut self, expiration: Expiration, expired: &mut Vec<T>) {
        debug_assert!(expiration.deadline > self.elapsed);
        self.elapsed = expiration.deadline;
        match expiration.location {
            Location::Slot { level, slot } => {
                let mut entries = {
                    let level = &mut self.levels[level];
                    level.occupied &= !(1 << slot);
                    std::mem::take(&mut level.slots[slot])
                };
                self.replace_all(&mut entries, expired);
                // Re-placed timers all went to lower levels, so the slot is
                // still empty: give it back its allocation.
                self.levels[level].slots[slot] = entries;
            }
            Location::Overflow => {
                let mut entries = std::mem::take(&mut self.overflow);
                self.overflow_min = u64::MAX;
                self.replace_all(&mut entries, expired);
            }
        }
    }

    /// Expires the timers of `entries` that are due and re-places the rest.
    fn replace_all(&mut self, entries: &mut Vec<(u64, T)>, expired: &mut Vec<T>) {
        for (deadline, value) in entries.drain(..) {
            if deadline <= self.elapsed {
                self.len -= 1;
                expired.push(value);
            } else {
                self.place(deadline, value);
            }
        }
    }
}

impl<T> std::fmt::Debug for TimerWheel<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TimerWheel")
            .field("elapsed", &self.elapsed)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The level for `deadline`: the highest differing bit against `elapsed`,
/// in groups of six. May return `LEVELS` or more (overflow).
fn level_for(elapsed: u64, deadline: u64) -> usize {
    // Or-ing in the slot mask makes deadlines within the same 64 ms land on
    // level 0 rather than underflowing.
    let masked = (elapsed ^ deadline) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    (significant / LEVEL_BITS) as usize
}

/// The slot of `deadline` within `level`.
fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (LEVEL_BITS * level as u32)) & SLOT_MASK) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: enough randomness for tests, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const DAY: u64 = 24 * 60 * MINUTE;

    fn drain(wheel: &mut TimerWheel<u64>, now: u64) -> Vec<u64> {
        let mut expired = Vec::new();
        wheel.advance(now, &mut expired);
        expired
    }

    #[test]
    fn empty_wheel_has_no_deadline() {
        let mut wheel = TimerWheel::<u64>::new(5);
        assert!(wheel.is_empty());
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_deadline(), None);
        assert!(drain(&mut wheel, 10 * DAY).is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn fires_exactly_at_deadline() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(1_005, 1);
        wheel.insert(1_064, 2);
        wheel.insert(1_200, 3);
        assert_eq!(wheel.len(), 3);
        assert!(drain(&mut wheel, 1_004).is_empty());
        assert_eq!(drain(&mut wheel, 1_005), vec![1]);
        assert!(drain(&mut wheel, 1_063).is_empty());
        assert_eq!(drain(&mut wheel, 1_064), vec![2]);
        assert!(drain(&mut wheel, 1_199).is_empty());
        assert_eq!(drain(&mut wheel, 1_200), vec![3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_next_advance_in_order() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(1_000, 3);
        wheel.insert(500, 2);
        wheel.insert(0, 1);
        wheel.insert(1_001, 4);
        assert_eq!(wheel.next_deadline(), Some(0));
        // A time before the wheel's own does not move it, but past timers
        // still fire.
        assert_eq!(drain(&mut wheel, 10), vec![1, 2, 3]);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.next_deadline(), Some(1_001));
        assert_eq!(drain(&mut wheel, 1_001), vec![4]);
        // Inserting behind the wheel after it moved.
        wheel.insert(900, 5);
        assert_eq!(drain(&mut wheel, 1_001), vec![5]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn many_timers_in_the_same_millisecond() {
        let mut wheel = TimerWheel::new(0);
        for value in 0..10_000 {
            wheel.insert(123_456, value);
        }
        wheel.insert(123_455, 20_000);
        wheel.insert(123_457, 30_000);
        assert_eq!(wheel.len(), 10_002);
        assert_eq!(drain(&mut wheel, 123_455), vec![20_000]);
        let same = drain(&mut wheel, 123_456);
        assert_eq!(same.len(), 10_000);
        let mut sorted = same.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10_000).collect::<Vec<_>>());
        assert_eq!(drain(&mut wheel, 123_457), vec![30_000]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn huge_jump_fires_everything_in_order() {
        let mut wheel = TimerWheel::new(77);
        let deadlines = [
            77 + 10 * MINUTE,
            77 + 10,
            77 + 70,
            77 + 5 * SECOND,
            77 + 3 * DAY,
            77 + 64 * 64,
            77 + 64 * 64 - 1,
        ];
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value as u64);
        }
        let fired = drain(&mut wheel, 77 + 1000 * DAY);
        let fired_deadlines: Vec<u64> = fired.iter().map(|&v| deadlines[v as usize]).collect();
        let mut expected = deadlines.to_vec();
        expected.sort_unstable();
        assert_eq!(fired_deadlines, expected);
        assert!(wheel.is_empty());
    }

    #[test]
    fn few_timers_over_long_gaps_need_few_steps() {
        // Following next_deadline must reach a timer ten minutes out in a
        // handful of steps (at most one per level), not one per millisecond.
        let mut wheel = TimerWheel::new(0);
        wheel.insert(10 * MINUTE, 1);
        let mut steps = 0;
        let mut fired = Vec::new();
        while let Some(deadline) = wheel.next_deadline() {
            assert!(deadline <= 10 * MINUTE);
            wheel.advance(deadline, &mut fired);
            steps += 1;
        }
        assert_eq!(fired, vec![1]);
        assert!(steps <= LEVELS, "{steps} steps");
    }

    #[test]
    fn far_future_deadlines_fire_on_time() {
        let start = 1_700_000_000_000; // a wall-clock-like starting point
        let mut wheel = TimerWheel::new(start);
        let deadlines = [
            start + 3 * DAY,
            start + 30 * DAY,
            start + 800 * DAY, // beyond the levels: overflow list
            start + 5 * 365 * DAY,
        ];
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value as u64);
        }
        for (value, &deadline) in deadlines.iter().enumerate() {
            assert!(drain(&mut wheel, deadline - 1).is_empty());
            let next = wheel.next_deadline().expect("timers remain");
            assert!(next <= deadline);
            assert_eq!(drain(&mut wheel, deadline), vec![value as u64]);
        }
        assert!(wheel.is_empty());

        // The same, reached only by following next_deadline.
        let mut wheel = TimerWheel::new(start);
        for (value, &deadline) in deadlines.iter().enumerate() {
            wheel.insert(deadline, value as u64);
        }
        let mut fired = Vec::new();
        let mut steps = 0;
        while let Some(deadline) = wheel.next_deadline() {
            let before = fired.len();
            wheel.advance(deadline, &mut fired);
            if fired.len() > before {
                assert_eq!(deadline, deadlines[fired[before] as usize]);
            }
            steps += 1;
        }
        assert_eq!(fired, vec![0, 1, 2, 3]);
        assert!(steps <= deadlines.len() * (LEVELS + 1) + 8, "{steps} steps");
    }

    #[test]
    fn deadlines_near_the_end_of_time() {
        let start = u64::MAX - 100;
        let mut wheel = TimerWheel::new(start);
        wheel.insert(u64::MAX, 2);
        wheel.insert(u64::MAX - 5, 1);
        assert_eq!(drain(&mut wheel, u64::MAX - 6), Vec::<u64>::new());
        assert_eq!(drain(&mut wheel, u64::MAX), vec![1, 2]);
        assert!(wheel.is_empty());

        let mut wheel = TimerWheel::new(0);
        wheel.insert(u64::MAX, 2);
        wheel.insert(1 << 50, 1);
        assert!(wheel.next_deadline().is_some_and(|d| d <= 1 << 50));
        assert!(drain(&mut wheel, (1 << 50) - 1).is_empty());
        assert_eq!(drain(&mut wheel, 1 << 50), vec![1]);
        assert!(drain(&mut wheel, u64::MAX - 1).is_empty());
        assert_eq!(drain(&mut wheel, u64::MAX), vec![2]);
    }

    /// Random deadlines against a sorted reference, over irregular advances
    /// including huge jumps and time that does not move.
    #[test]
    fn random_against_reference() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let start = rng.below(1 << 40);
            let mut wheel = TimerWheel::new(start);
            let mut now = start;
            // value -> deadline; the reference is the set of live values.
            let mut deadlines: Vec<u64> = Vec::new();
            let mut live: Vec<u64> = Vec::new();

            for _ in 0..400 {
                for _ in 0..rng.below(20) {
                    let deadline = match rng.below(10) {
                        0 => now.saturating_sub(rng.below(1_000)),
                        1 => now,
                        2 | 3 => now + rng.below(64),
                        4 | 5 => now + rng.below(5 * SECOND),
                        6 => now + rng.below(10 * MINUTE),
                        7 => now + rng.below(3 * DAY),
                        8 => now + rng.below(1 << 37),
                        _ => now + rng.below(1 << 44),
                    };
                    let value = deadlines.len() as u64;
                    deadlines.push(deadline);
                    live.push(value);
                    wheel.insert(deadline, value);
                }
                assert_eq!(wheel.len(), live.len());

                let earliest = live.iter().map(|&v| deadlines[v as usize]).min();
                match (wheel.next_deadline(), earliest) {
                    (None, None) => {}
                    (Some(next), Some(earliest)) => {
                        assert!(next <= earliest, "next {next} after earliest {earliest}")
                    }
                    (next, earliest) => panic!("next {next:?} earliest {earliest:?}"),
                }

                let target = match rng.below(12) {
                    0 => now.saturating_sub(rng.below(100)), // backwards: no-op
                    1 => now,
                    2..=5 => now + rng.below(64),
                    6..=8 => now + rng.below(10 * SECOND),
                    9 => now + rng.below(10 * MINUTE),
                    10 => wheel.next_deadline().unwrap_or(now).max(now),
                    _ => now + rng.below(1 << 38),
                };
                now = now.max(target);

                let fired = drain(&mut wheel, target);
                let fired_deadlines: Vec<u64> =
                    fired.iter().map(|&v| deadlines[v as usize]).collect();
                assert!(
                    fired_deadlines.windows(2).all(|pair| pair[0] <= pair[1]),
                    "out of order: {fired_deadlines:?}"
                );
                let mut expected: Vec<u64> = live
                    .iter()
                    .copied()
                    .filter(|&v| deadlines[v as usize] <= now)
                    .collect();
                live.retain(|&v| deadlines[v as usize] > now);
                let mut fired_sorted = fired;
                fired_sorted.sort_unstable();
                expected.sort_unstable();
                assert_eq!(fired_sorted, expected, "seed {seed} now {now}");
            }

            let fired = drain(&mut wheel, u64::MAX);
            assert_eq!(fired.len(), live.len());
            assert!(wheel.is_empty());
            assert_eq!(wheel.next_deadline(), None);
        }
    }

    #[test]
    fn level_placement() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, (1 << 36) - 1), 5);
        assert_eq!(level_for(0, 1 << 36), 6);
        assert_eq!(slot_for(64 * 5 + 3, 0), 3);
        assert_eq!(slot_for(64 * 5 + 3, 1), 5);
    }
}
