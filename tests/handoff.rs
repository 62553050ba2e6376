//! Socket hand-off (skynet's gate -> agent): a service passes a connection
//! it owns to another service by sending the socket object; the receiver
//! reads and writes it with the same API, bytes already buffered included.
//! Driven through `tests/scripts/gate.lua` and `gate_agent.lua`.

mod common;

use common::{test_script, Client, End, Server};
use std::thread;

fn gate(agents: usize) -> Server {
    Server::start(
        &test_script("gate.lua"),
        &[&format!("agents={agents}"), "--workers", "2"],
    )
}

/// Reads an answer `agent-H NAME: LINE` and returns the agent it names.
#[track_caller]
fn agent_answer(client: &mut Client, name: &str, line: &str) -> String {
    let answer = client.line();
    let Some((agent, rest)) = answer.split_once(' ') else {
        client.fail(&format!("not an agent's answer: {answer:?}"));
    };
    if !agent.starts_with("agent-") || rest != format!("{name}: {line}") {
        client.fail(&format!(
            "expected \"agent-H {name}: {line}\", got {answer:?}"
        ));
    }
    agent.to_string()
}

#[test]
fn a_gate_hands_every_connection_to_an_agent_with_its_pipelined_input() {
    let server = gate(3);
    let clients: Vec<_> = (0..50)
        .map(|index| {
            let mut client = server.client();
            thread::spawn(move || {
                // Half hand over with send, half with call (the socket in a
                // table); every client pipelines its lines behind the first.
                let how = if index % 2 == 0 { "send" } else { "call" };
                let name = format!("c{index}");
                let mut input = format!("{how} {name}\n");
                for line in 1..=5 {
                    input.push_str(&format!("line {line}\n"));
                }
                client.send(input);
                let agent = agent_answer(&mut client, &name, "line 1");
                for line in 2..=5 {
                    let this = agent_answer(&mut client, &name, &format!("line {line}"));
                    assert_eq!(this, agent, "answers of {name} came from two agents");
                }
                // The connection goes on both ways after the hand-off.
                client.send("one more\n");
                agent_answer(&mut client, &name, "one more");
                agent
            })
        })
        .collect();
    let mut agents: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    agents.sort();
    agents.dedup();
    assert!(
        agents.len() > 1,
        "every connection went to one agent: {agents:?}\n{}",
        server.log()
    );
}

#[test]
fn hand_off_refuses_busy_and_closed_sockets_and_keeps_a_refused_one() {
    let server = gate(2);
    let mut client = server.client();
    client.send("checks\n");
    assert_eq!(client.line(), "release the reader");
    client.send("for the reader\n");
    let report = client.line();
    let expected = [
        "busy false socket busy",
        "reader got for the reader",
        "dead nil dead",
        "dead_call false is dead",
        "still_mine true nil",
        "handed taken",
        "after_write nil closed",
        "after_read nil closed nil",
        "after_close false closed",
        "again false closed socket",
    ];
    assert_eq!(report, expected.join("; "), "{}", server.log());
    // The agent serves the connection now.
    client.send("ping\n");
    let answer = client.line();
    assert!(answer.ends_with(" checks: ping"), "{answer}");
}

#[test]
fn an_agent_that_exits_closes_the_sockets_it_holds() {
    // One host with one agent: both connections end up in that agent.
    let server = Server::start(&test_script("gate.lua"), &["agents=1", "--hosts", "1"]);
    let mut first = server.client();
    first.send("send first\nhello\n");
    let agent = agent_answer(&mut first, "first", "hello");
    let mut second = server.client();
    second.send("send second\nhello\n");
    assert_eq!(agent_answer(&mut second, "second", "hello"), agent);
    first.send("exit\n");
    assert_eq!(first.end(), End::Closed);
    assert_eq!(second.end(), End::Closed);
    // The gate's next hand-off fails (its agent is dead): the socket stays
    // with the gate, whose handler raises and closes it.
    let mut third = server.client();
    third.send("send third\n");
    assert_eq!(third.end(), End::Closed);
    server.wait_log("session error");
}
