//! Durability of `server-scripts/kv.lua` with `persist=FILE` under
//! concurrent writers: four clients SET (and MSET) keys of one shared key
//! space while the server is killed with SIGKILL at a random moment, twenty
//! times in a row on the same file. After each restart every key must hold
//! a value that the acknowledged writes allow.
//!
//! What "allow" means, per key (linearizability of single-key writes):
//! a write W is overwritten for sure when another write Y to the key was
//! sent after W's `+OK` arrived and Y got its own `+OK`. The value after a
//! restart must be that of a write not overwritten for sure: an
//! acknowledged write that nothing acknowledged came after, or a write
//! that was in flight (no reply yet: it may or may not have been applied).
//! The key's state before any write is a write of "absent", acknowledged at
//! the start. Each value is unique, so the value names its write.
//!
//! The random moments, keys and value sizes come from a seeded generator;
//! the seed is printed, and `LUNET_DURABILITY_SEED=N` repeats it (the
//! moments then repeat; the interleaving of threads may not).

mod common;

use common::{server_script, try_connect, Server, TempDir, DEADLINE};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
const WRITERS: u64 = 4;
const KEYS: u64 = 48;
/// The kill comes this long after the writers start, at random.
const KILL_AFTER_MS: std::ops::Range<u64> = 5..250;
/// A writer stops after this many writes in a round if no kill came (a
/// bound on the test's time, not expected to be reached).
const MAX_WRITES_PER_ROUND: usize = 50_000;

/// xorshift64*: repeatable from its seed, no dependency.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.max(1))
    }

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

/// One write to a key (or a state known at some moment, as a write
/// acknowledged then).
#[derive(Clone, Debug)]
struct Attempt {
    /// The value; None for "absent".
    value: Option<Vec<u8>>,
    sent: Instant,
    /// When its `+OK` arrived; None while in flight when the server died.
    acked: Option<Instant>,
}

fn key_name(key: u64) -> String {
    format!("key:{key}")
}

/// A blocking RESP connection that reads one reply line at a time.
struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(port: u16) -> Connection {
        let stream = try_connect(port).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Connection {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    fn send(&mut self, args: &[&[u8]]) -> std::io::Result<()> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)
    }

    /// One reply line without its CRLF; None when the connection ended.
    fn line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\r\n") => {
                line.truncate(line.len() - 2);
                Some(line)
            }
            Ok(_) => None,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no reply within {DEADLINE:?} from a live server")
            }
            Err(_) => None,
        }
    }

    /// GET: Some(value) or None for a missing key; panics on anything else.
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.send(&[b"GET", key.as_bytes()]).expect("send GET");
        let head = self.line().expect("a reply to GET");
        if head == b"$-1" {
            return None;
        }
        let size: usize = std::str::from_utf8(&head)
            .ok()
            .and_then(|h| h.strip_prefix('$'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("GET {key}: {:?}", String::from_utf8_lossy(&head)));
        let mut data = vec![0; size + 2];
        std::io::Read::read_exact(&mut self.reader, &mut data).expect("bulk data");
        data.truncate(size);
        Some(data)
    }
}

/// What one writer did in one round: its writes, and the error replies it
/// got (a refused write, which is not acknowledged).
struct Writes {
    writes: Vec<(u64, Attempt)>,
    refused: Vec<String>,
}

/// Writes random keys, one command at a time, until the connection ends:
/// mostly SET, one in eight an MSET of two or three distinct keys (one
/// transaction in kv.lua's file).
fn writer(port: u16, id: u64, round: usize, seed: u64) -> Writes {
    let mut random = Random::new(seed);
    let mut connection = Connection::open(port);
    let mut done = Writes {
        writes: Vec::new(),
        refused: Vec::new(),
    };
    for n in 0..MAX_WRITES_PER_ROUND {
        let count = if random.below(8) == 0 {
            2 + random.below(2)
        } else {
            1
        };
        let mut keys: Vec<u64> = Vec::new();
        while (keys.len() as u64) < count {
            let key = random.below(KEYS);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut args: Vec<Vec<u8>> = vec![if count == 1 {
            b"SET".to_vec()
        } else {
            b"MSET".to_vec()
        }];
        let mut values = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            // A unique value of 0 to ~200 bytes: its head names the write.
            let mut value = format!("w{id}.r{round}.n{n}.{i}.").into_bytes();
            let padding = random.below(200) as usize;
            value.extend(std::iter::repeat_n(b'v', padding));
            args.push(key_name(*key).into_bytes());
            args.push(value.clone());
            values.push(value);
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let sent = Instant::now();
        let reply = match connection.send(&args) {
            Ok(()) => connection.line(),
            Err(_) => None,
        };
        let acked = match &reply {
            Some(line) if line == b"+OK" => Some(Instant::now()),
            Some(line) => {
                done.refused
                    .push(String::from_utf8_lossy(line).into_owned());
                None
            }
            // The server died with this write in flight.
            None => None,
        };
        for (key, value) in keys.into_iter().zip(values) {
            let attempt = Attempt {
                value: Some(value),
                sent,
                acked,
            };
            done.writes.push((key, attempt));
        }
        if reply.is_none() {
            return done;
        }
    }
    done
}

/// The values a key may hold after a restart, given its history.
fn allowed(history: &[Attempt]) -> Vec<&Option<Vec<u8>>> {
    history
        .iter()
        .filter(|write| {
            let overwritten = write.acked.is_some_and(|acked| {
                history
                    .iter()
                    .any(|later| later.acked.is_some() && later.sent > acked)
            });
            !overwritten
        })
        .map(|write| &write.value)
        .collect()
}

fn show(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "(absent)".into(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let head = text.trim_end_matches('v');
            format!("{head}+{} bytes", bytes.len() - head.len())
        }
    }
}

fn seed() -> u64 {
    match std::env::var("LUNET_DURABILITY_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("LUNET_DURABILITY_SEED={text} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_under_concurrent_writers() {
    let seed = seed();
    println!("durability seed: {seed} (LUNET_DURABILITY_SEED={seed} repeats it)");
    let mut random = Random::new(seed);
    let dir = TempDir::new("durability");
    let persist = format!("persist={}", dir.file("kv.sqlite"));
    let script = server_script("kv.lua");

    let start = Instant::now();
    let mut history: HashMap<u64, Vec<Attempt>> = (0..KEYS)
        .map(|key| {
            let absent = Attempt {
                value: None,
                sent: start,
                acked: Some(start),
            };
            (key, vec![absent])
        })
        .collect();
    let (mut acknowledged, mut in_flight) = (0usize, 0usize);

    for round in 0..=ROUNDS {
        let mut server = Server::start(&script, &[&persist]);
        let port = server.port();

        // Every key holds a value its history allows; from now on that
        // value is the key's known state.
        let mut connection = Connection::open(port);
        for key in 0..KEYS {
            let found = connection.get(&key_name(key));
            let writes = history.get_mut(&key).unwrap();
            let candidates = allowed(writes);
            if !candidates.contains(&&found) {
                let acked: Vec<String> = writes
                    .iter()
                    .filter(|w| w.acked.is_some())
                    .map(|w| show(&w.value))
                    .collect();
                let last_acked = &acked[acked.len().saturating_sub(8)..];
                server.fail(&format!(
                    "seed {seed}, after kill {round}: {} holds {}; allowed: {:?}; \
                     its last acknowledged writes: {last_acked:?}",
                    key_name(key),
                    show(&found),
                    candidates.iter().map(|v| show(v)).collect::<Vec<_>>(),
                ));
            }
            let now = Instant::now();
            *writes = vec![Attempt {
                value: found,
                sent: now,
                acked: Some(now),
            }];
        }
        drop(connection);
        if round == ROUNDS {
            break;
        }

        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let writer_seed = random.next();
                thread::spawn(move || writer(port, id, round, writer_seed))
            })
            .collect();
        let kill_after =
            KILL_AFTER_MS.start + random.below(KILL_AFTER_MS.end - KILL_AFTER_MS.start);
        thread::sleep(Duration::from_millis(kill_after));
        server.signal(libc::SIGKILL);
        let status = server.wait_exit(DEADLINE);
        assert!(!status.success(), "the killed server exited with {status}");

        for handle in writers {
            let done = handle.join().expect("a writer panicked");
            assert!(
                done.refused.is_empty(),
                "seed {seed}, round {round}: writes refused: {:?}",
                done.refused
            );
            for (key, write) in done.writes {
                if write.acked.is_some() {
                    acknowledged += 1;
                } else {
                    in_flight += 1;
                }
                history.get_mut(&key).unwrap().push(write);
            }
        }
    }
    println!("{ROUNDS} kills: {acknowledged} acknowledged writes checked, {in_flight} in flight at a kill");
    // Bounds the test's worth: writes happened and kills caught some in
    // flight.
    assert!(
        acknowledged > 0,
        "no write was acknowledged in {ROUNDS} rounds"
    );
}
