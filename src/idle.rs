//! Garbage of idle Lua services goes back: Lua collects as a VM allocates,
//! so a VM that stops allocating (a host whose clients left after a burst
//! of large values) keeps its last cycle's garbage, megabytes of dead
//! strings, for as long as it stays idle.
//!
//! A thread looks at every service every `LOOK_EVERY`. One that was quiet
//! since the last look (at most `QUIET` events: a timer that ticks is not
//! work), and whose VM holds `GROWN` more than after its last collection,
//! is sent `MessageKind::Collect` (as the console's `gc`): a full
//! collection in its own next turn. The heap then shrinks,
//! and the allocator's trimming (`allocator.rs`) gives the pages back. A
//! busy service is never collected this way: its own allocations pace its
//! collector.

use std::collections::HashMap;
use std::time::Duration;

use lunet_core::{Event, Message, Runtime};
use lunet_lua::protocol::MessageKind;

const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Bytes a VM must have grown by since its last collection.
const GROWN: usize = 1024 * 1024;
/// Events in `LOOK_EVERY` that still count as quiet.
const QUIET: u64 = 10;

/// What was seen of one service at the last look.
struct Seen {
    events: u64,
    /// Its VM's bytes after the last collection this thread asked for (0
    /// before the first: a VM of 1 MiB or more is collected once when it
    /// first goes quiet).
    floor: usize,
    /// A collection was asked for at the last look: what the VM holds now
    /// is its new floor, if it was quiet since.
    asked: bool,
}

/// Starts the thread; it runs as long as the process.
pub fn start(runtime: &Runtime) -> std::io::Result<()> {
    let runtime = runtime.clone();
    std::thread::Builder::new()
        .name("lunet-idle".into())
        .spawn(move || {
            crate::signals::block_all();
            let mut seen: HashMap<u64, Seen> = HashMap::new();
            loop {
                std::thread::sleep(LOOK_EVERY);
                look(&runtime, &mut seen);
            }
        })?;
    Ok(())
}

fn look(runtime: &Runtime, seen: &mut HashMap<u64, Seen>) {
    let services = runtime.services();
    // Once per look, not per service: thousands of services are usual.
    let live: std::collections::HashSet<u64> = services.iter().map(|s| s.id()).collect();
    seen.retain(|id, _| live.contains(id));
    for service in services {
        let events = service.stats().totals().events;
        let memory = service.stats().memory();
        let last = seen.entry(service.id()).or_insert(Seen {
            events,
            floor: 0,
            asked: false,
        });
        let asked = std::mem::take(&mut last.asked);
        // The collection asked for is one of its events.
        let work = events.saturating_sub(last.events + u64::from(asked));
        last.events = events;
        if work > QUIET {
            // Busy since: what it holds may be new garbage, not a floor
            // (taken as one, that garbage would stay for as long as the VM
            // stays quiet).
            continue;
        }
        if asked {
            // Quiet since the collection: it holds what survived it.
            last.floor = memory;
        } else if memory >= last.floor.saturating_add(GROWN) {
            let collect = Message::signal(MessageKind::Collect.code());
            last.asked = runtime.post(&service, Event::Message(collect));
        }
    }
}
