//! `server-scripts/chat.lua` with real TCP clients: rooms are services,
//! clients spread over several hosts, lines reach every other member of the
//! room exactly once and in the order each sender sent them.

mod common;

use common::{server_script, Client, Server};
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

const HOSTS: &str = "4";

fn chat() -> Server {
    Server::start(&server_script("chat.lua"), &["--hosts", HOSTS])
}

/// A connected client that has read its welcome and taken `nick`.
fn member(server: &Server, nick: &str) -> Client {
    let mut client = server.client();
    let welcome = client.line();
    assert!(
        welcome.starts_with("* welcome, guest"),
        "welcome: {welcome:?}"
    );
    client.send(format!("/nick {nick}\n"));
    assert_eq!(client.line(), format!("* you are now {nick}"));
    client
}

/// Reads `count` chat lines of `room` and checks that each sender's
/// messages `msg <sender> <k>` arrive exactly once, in order, numbered from
/// `first`; returns how many came from each sender.
#[track_caller]
fn read_messages(
    client: &mut Client,
    me: &str,
    room: &str,
    count: usize,
    first: usize,
) -> HashMap<String, usize> {
    let prefix = format!("[{room}] ");
    let mut next: HashMap<String, usize> = HashMap::new();
    for _ in 0..count {
        let line = client.line();
        let Some(rest) = line.strip_prefix(&prefix) else {
            client.fail(&format!("{me}: expected a line of {room}, got {line:?}"));
        };
        let (sender, text) = rest
            .split_once(": ")
            .unwrap_or_else(|| client.fail(&format!("{me}: no 'nick: text' in {line:?}")));
        if sender == me {
            client.fail(&format!("{me} received its own message {line:?}"));
        }
        let expected = next.entry(sender.to_string()).or_insert(first);
        let want = format!("msg {sender} {expected}");
        if text != want {
            client.fail(&format!(
                "{me}: from {sender} expected {want:?} (order, exactly once), got {text:?}"
            ));
        }
        *expected += 1;
    }
    next.into_iter()
        .map(|(sender, n)| (sender, n - first))
        .collect()
}

fn say_burst(client: &mut Client, nick: &str, from: usize, to: usize) {
    let burst: String = (from..to).map(|k| format!("msg {nick} {k}\n")).collect();
    client.send(burst);
}

#[test]
fn five_clients_chat_in_one_room() {
    let server = chat();
    let nicks: Vec<String> = (0..5).map(|i| format!("user{i}")).collect();
    let mut clients: Vec<Client> = nicks.iter().map(|n| member(&server, n)).collect();

    // Join one by one: the newcomer sees who is here, the others a notice.
    for i in 0..clients.len() {
        clients[i].send("/join lobby\n");
        let here: Vec<&str> = {
            let mut here: Vec<&str> = nicks[..=i].iter().map(String::as_str).collect();
            here.sort();
            here
        };
        assert_eq!(
            clients[i].line(),
            format!("* you joined lobby ({} here: {})", i + 1, here.join(", "))
        );
        for client in clients.iter_mut().take(i) {
            assert_eq!(client.line(), format!("* {} joined lobby", nicks[i]));
        }
    }

    // Someone in another room.
    let mut outsider = member(&server, "outsider");
    outsider.send("/join other\n");
    assert_eq!(outsider.line(), "* you joined other (1 here: outsider)");

    // Everyone says 20 lines at once; everyone else gets all 80, in order
    // per sender, exactly once.
    const BURST: usize = 20;
    for (client, nick) in clients.iter_mut().zip(&nicks) {
        say_burst(client, nick, 0, BURST);
    }
    for (client, nick) in clients.iter_mut().zip(&nicks) {
        let counts = read_messages(client, nick, "lobby", BURST * 4, 0);
        assert_eq!(counts.len(), 4, "{nick} heard from {counts:?}");
        assert!(counts.values().all(|&n| n == BURST), "{nick}: {counts:?}");
    }

    // The outsider heard none of it: the first lines it gets are from its
    // own room.
    let mut visitor = member(&server, "visitor");
    visitor.send("/join other\nmarker\n");
    assert_eq!(
        visitor.line(),
        "* you joined other (2 here: outsider, visitor)"
    );
    assert_eq!(outsider.line(), "* visitor joined other");
    assert_eq!(outsider.line(), "[other] visitor: marker");

    // user4 disconnects: the others get a leave notice and keep chatting.
    drop(clients.pop());
    for client in clients.iter_mut() {
        assert_eq!(client.line(), "* user4 left lobby");
    }
    for (client, nick) in clients.iter_mut().zip(&nicks) {
        say_burst(client, nick, BURST, BURST + 5);
    }
    for (client, nick) in clients.iter_mut().zip(&nicks) {
        let counts = read_messages(client, nick, "lobby", 5 * 3, BURST);
        assert_eq!(counts.len(), 3, "{nick} heard from {counts:?}");
        assert!(counts.values().all(|&n| n == 5), "{nick}: {counts:?}");
    }

    // Commands: who is here, nick changes are announced, /quit says bye.
    clients[0].send("/who\n");
    assert_eq!(clients[0].line(), "* in lobby: user0, user1, user2, user3");
    clients[1].send("/nick bob\nhello\n");
    assert_eq!(clients[1].line(), "* you are now bob");
    for index in [0, 2, 3] {
        assert_eq!(clients[index].line(), "* user1 is now known as bob");
        assert_eq!(clients[index].line(), "[lobby] bob: hello");
    }
    clients[3].send("/quit\n");
    assert_eq!(clients[3].line(), "* bye");
    assert_eq!(clients[3].try_line(), Err(common::End::Closed));
    assert_eq!(clients[0].line(), "* user3 left lobby");
}

#[test]
fn hosts_racing_to_create_a_room_end_up_in_one() {
    let server = chat();
    let port = server.port();
    let log = server.shared_log();
    const N: usize = 5;
    let start = Arc::new(Barrier::new(N));
    let joined = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let (start, joined, log) = (start.clone(), joined.clone(), log.clone());
            thread::spawn(move || {
                let nick = format!("racer{i}");
                let mut client = Client::connect(port, log);
                client.line();
                client.send(format!("/nick {nick}\n"));
                assert_eq!(client.line(), format!("* you are now {nick}"));
                // All five ask for the new room at the same moment.
                start.wait();
                client.send("/join race\n");
                let mut notices = 0;
                loop {
                    let line = client.line();
                    if line.starts_with("* you joined race (") {
                        break;
                    }
                    assert!(line.ends_with(" joined race"), "{nick}: {line:?}");
                    notices += 1;
                }
                joined.wait();
                // Everyone is in: the room lists all five.
                client.send("/who\n");
                loop {
                    let line = client.line();
                    if let Some(list) = line.strip_prefix("* in race: ") {
                        assert_eq!(list, "racer0, racer1, racer2, racer3, racer4");
                        break;
                    }
                    assert!(line.ends_with(" joined race"), "{nick}: {line:?}");
                    notices += 1;
                }
                // Each saw the joins of those who came after it.
                (nick, notices, client)
            })
        })
        .collect();
    let mut clients: Vec<(String, usize, Client)> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut notices: Vec<usize> = clients.iter().map(|(_, n, _)| *n).collect();
    notices.sort();
    assert_eq!(notices, vec![0, 1, 2, 3, 4]);

    // And a line reaches the other four.
    clients[0].2.send("msg racer0 0\n");
    for (nick, _, client) in clients.iter_mut().skip(1) {
        let counts = read_messages(client, nick, "race", 1, 0);
        assert_eq!(counts.get("racer0"), Some(&1));
    }
}
