//! The login example app (`server-scripts/login/`, docs/runtime-model.md),
//! served as an app directory by `lunet serve DIR`, over TCP: logins go
//! through the back runtime with a continuation the front runtime runs,
//! each connection keeps its login state, and a device-near event reaches
//! the back runtime through its group-level attachment.

mod common;

use common::{Client, Server, TempDir};
use std::path::Path;

fn app() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server-scripts/login")
}

fn ask(client: &mut Client, line: &str) -> String {
    client.send(format!("{line}\n"));
    client.line()
}

#[test]
fn users_log_in_keep_their_state_and_meet_over_tcp() {
    let data = TempDir::new("login");
    let data_arg = data.0.display().to_string();
    let server = Server::start(&app(), &["--data", data_arg.as_str(), "--hosts", "2"]);
    let mut alice = server.client();
    let mut bob = server.client();
    assert_eq!(ask(&mut alice, "WHOAMI"), "nobody");
    assert_eq!(ask(&mut alice, "LOGIN alice wonderland"), "OK alice");
    assert_eq!(ask(&mut alice, "WHOAMI"), "alice");
    // Each connection has its own front runtime and login state.
    assert_eq!(ask(&mut bob, "WHOAMI"), "nobody");
    assert_eq!(ask(&mut bob, "NEAR alice 3"), "ERR not logged in");
    assert_eq!(ask(&mut bob, "LOGIN bob wrong"), "DENIED");
    assert_eq!(ask(&mut bob, "WHOAMI"), "nobody");
    assert_eq!(ask(&mut bob, "LOGIN bob builder"), "OK bob");
    assert_eq!(ask(&mut bob, "NEARBY"), "(none)");
    // device-near, fired in alice's front runtime, reaches the back
    // runtime through its attachment to the group.
    assert_eq!(ask(&mut alice, "NEAR bob 3"), "OK");
    assert_eq!(ask(&mut bob, "NEARBY"), "alice:3");
    assert_eq!(ask(&mut alice, "NEARBY"), "bob:3");
    assert_eq!(ask(&mut alice, "REGISTER carol secret"), "OK carol");
    assert_eq!(ask(&mut alice, "REGISTER carol other"), "TAKEN");
    assert!(ask(&mut alice, "FLY").starts_with("ERR unknown command"));
    assert_eq!(ask(&mut alice, "QUIT"), "BYE");
    alice.end();
    assert_eq!(ask(&mut bob, "LOGIN carol secret"), "OK carol");
    assert_eq!(ask(&mut bob, "WHOAMI"), "carol");
    drop(bob);
    drop(server);
    assert!(data.0.join("userinfo.server.sqlite").is_file());

    // The back runtime's storage outlives the process.
    let server = Server::start(&app(), &["--data", data_arg.as_str(), "--hosts", "2"]);
    let mut carol = server.client();
    assert_eq!(ask(&mut carol, "LOGIN carol secret"), "OK carol");
    assert_eq!(ask(&mut carol, "NEARBY"), "(none)");
}
