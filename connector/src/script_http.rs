//! `load.http` for scripted clients: requests built and responses parsed
//! in Rust, so a script's HTTP client costs no Lua parsing.
//!
//! - `load.http.request([options])` is a whole request as a string (made
//!   by lunet-lua's `build_request`, as `lunet.http.request` makes its), to
//!   write with `sock:write`: without options the one the http profile
//!   would send (`--method`, `--path`, `--header`, `--body`/`--body-size`,
//!   `Host:` the target), built once; with `{method=, path=, headers=,
//!   body=}` a new one (unset fields default to those).
//! - `load.http.read(sock [, method])` reads one response with
//!   `lunet.http.read_response` (lunet-lua's reader) and counts its bytes.
//!   `load.request` records the status of a response its function returns
//!   (shown as `statuses` in the report and `--json`).

use lunet_lua::build_request;
use lunet_lua::mlua::{self, Lua, Table};

use crate::args::{HttpSpec, Plan, Workload};

/// The method, path and body of the profile's request (`spec.request`).
fn parts(spec: &HttpSpec) -> (String, String, Vec<u8>) {
    let request = &spec.request;
    let line_end = request.iter().position(|&b| b == b'\r').unwrap_or(0);
    let line = String::from_utf8_lossy(&request[..line_end]).into_owned();
    let mut words = line.split(' ');
    let method = words.next().unwrap_or("GET").to_string();
    let path = words.next().unwrap_or("/").to_string();
    let body_start = memchr::memmem::find(request, b"\r\n\r\n").map_or(request.len(), |at| at + 4);
    (method, path, request[body_start..].to_vec())
}

/// Puts `http_default` and `http_build` on the driver's `core`.
pub fn install(lua: &Lua, plan: &Plan, core: &Table) -> mlua::Result<()> {
    let Workload::Script { http, .. } = &plan.workload else {
        return Ok(());
    };
    core.set("http_default", lua.create_string(&http.request)?)?;
    let (method, path, body) = parts(http);
    core.set("http_method", method.as_str())?;
    let host = plan.target.to_string();
    core.set(
        "http_build",
        lua.create_function(move |lua, options: Table| {
            let method_option: Option<String> = options.get("method")?;
            let method = method_option.map_or_else(|| method.clone(), |m| m.to_ascii_uppercase());
            let path: String = options
                .get::<Option<String>>("path")?
                .unwrap_or_else(|| path.clone());
            let headers: Option<Table> = options.get("headers")?;
            let body_option: Option<mlua::LuaString> = options.get("body")?;
            let request_body = body_option
                .as_ref()
                .map(|b| b.as_bytes().to_vec())
                .unwrap_or_else(|| body.clone());
            match build_request(&method, &path, &host, headers.as_ref(), &request_body) {
                Ok(request) => Ok((Some(lua.create_string(&request)?), None)),
                Err(error) => Ok((None, Some(format!("load.http.request: {error}")))),
            }
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_parts() {
        let request = build_request("POST", "/p", "127.0.0.1:1", None, b"abc").unwrap();
        assert_eq!(
            String::from_utf8(request.clone()).unwrap(),
            "POST /p HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 3\r\n\r\nabc"
        );
        let spec = HttpSpec {
            request,
            head: false,
        };
        assert_eq!(parts(&spec), ("POST".into(), "/p".into(), b"abc".to_vec()));
        assert!(build_request("G T", "/", "h", None, b"").is_err());
        assert!(build_request("GET", "/a b", "h", None, b"").is_err());
    }
}
