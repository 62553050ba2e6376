//! `server-scripts/todo.lua`: the JSON todo API on SQLite, driven by
//! Python's http.client and json (a real client that checks the JSON), and
//! by curl.

mod common;
mod http_support;

use common::{server_script, Server, TempDir};
use http_support::{curl, python};

fn todo_server(dir: &TempDir) -> Server {
    let db = format!("db={}", dir.file("todo.sqlite"));
    Server::start(&server_script("todo.lua"), &[&db])
}

#[test]
fn the_api_round_trip() {
    let dir = TempDir::new("todo");
    let server = todo_server(&dir);
    let script = format!(
        r#"
import http.client, json
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
def call(method, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {{"Content-Type": "application/json"}} if data is not None else {{}}
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    text = r.read()
    return r.status, r.getheader("Content-Type"), r.getheader("Location"), (json.loads(text) if text else None)

assert call("GET", "/todos") == (200, "application/json", None, []), call("GET", "/todos")
s, t, loc, first = call("POST", "/todos", {{"title": "buy milk"}})
assert (s, t) == (201, "application/json"), (s, t)
assert first["title"] == "buy milk" and first["done"] is False and isinstance(first["id"], int), first
assert loc == "/todos/%d" % first["id"], loc
s, _, _, second = call("POST", "/todos", {{"title": "write ünïcode ✓", "done": True}})
assert s == 201 and second["done"] is True and second["title"] == "write ünïcode ✓", second
assert call("GET", "/todos/%d" % first["id"])[3] == first
s, _, _, todos = call("GET", "/todos")
assert s == 200 and [t["id"] for t in todos] == [first["id"], second["id"]], todos
assert [t["id"] for t in call("GET", "/todos?done=true")[3]] == [second["id"]]
assert [t["id"] for t in call("GET", "/todos?limit=1")[3]] == [first["id"]]
assert [t["id"] for t in call("GET", "/todos?after=%d" % first["id"])[3]] == [second["id"]]
s, _, _, updated = call("PUT", "/todos/%d" % first["id"], {{"done": True}})
assert s == 200 and updated == {{"id": first["id"], "title": "buy milk", "done": True}}, updated
s, _, _, updated = call("PUT", "/todos/%d" % first["id"], {{"title": "buy oat milk"}})
assert updated["title"] == "buy oat milk" and updated["done"] is True, updated
assert call("DELETE", "/todos/%d" % first["id"])[0] == 204
assert call("GET", "/todos/%d" % first["id"])[0] == 404
assert call("DELETE", "/todos/%d" % first["id"])[0] == 404
assert call("PUT", "/todos/999", {{"done": True}})[0] == 404
assert call("GET", "/todos/abc")[0] == 404

# Validation errors: 400 with a JSON error naming the problem.
for body, raw, word in [
    ({{}}, None, "title is required"),
    ({{"title": ""}}, None, "title must be a non-empty string"),
    ({{"title": 5}}, None, "title must be a non-empty string"),
    ({{"title": "x" * 201}}, None, "longer than 200"),
    ({{"title": "x", "done": "yes"}}, None, "done must be true or false"),
    ({{"title": "x", "color": "red"}}, None, "unknown field 'color'"),
    (None, "[1, 2]", "a JSON object is expected"),
    (None, "{{\"title\": ", "invalid JSON"),
    (None, "", "a JSON object is expected"),
]:
    s, t, _, error = call("POST", "/todos", body, raw)
    assert s == 400 and t == "application/json" and word in error["error"], (body, raw, s, error)
s, _, _, error = call("PUT", "/todos/%d" % second["id"], {{}})
assert s == 400 and "nothing to change" in error["error"], error
assert call("GET", "/todos?limit=0")[0] == 400
assert call("GET", "/todos?done=maybe")[0] == 400
print("ok")
"#,
        port = server.port()
    );
    assert_eq!(python(&script).trim(), "ok");
}

#[test]
fn wrong_methods_and_paths() {
    let dir = TempDir::new("todo-methods");
    let server = todo_server(&dir);
    let base = format!("http://127.0.0.1:{}", server.port());
    let output = curl(&["--include", "--request", "PATCH", &format!("{base}/todos")]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(text.contains("Allow: GET, HEAD, POST"), "{text}");
    let output = curl(&["--include", &format!("{base}/elsewhere")]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    // A body over the server's limit is refused before the handler runs.
    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let file = dir.file("big.json");
    std::fs::write(&file, big).unwrap();
    let output = curl(&[
        "--include",
        "--data-binary",
        &format!("@{file}"),
        &format!("{base}/todos"),
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[test]
fn todos_survive_a_restart() {
    let dir = TempDir::new("todo-restart");
    let base = {
        let server = todo_server(&dir);
        let base = format!("http://127.0.0.1:{}", server.port());
        let output = curl(&[
            "--data",
            r#"{"title": "persist me"}"#,
            &format!("{base}/todos"),
        ]);
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("persist me"),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        base
    };
    drop(base);
    let server = todo_server(&dir);
    let output = curl(&[&format!("http://127.0.0.1:{}/todos", server.port())]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("persist me"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
