//! The `lunet load` command line ([`LoadArgs`]) and its translation into a
//! checked [`Plan`]: durations, source address ranges, payload escapes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::Error;

/// Built-in workloads: Rust state machines, no Lua on the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Line out, the same line back, verified byte for byte.
    Echo,
    /// HTTP/1.1 requests on keep-alive connections; statuses counted.
    Http,
    /// RESP (Redis protocol) SET/GET mix; GET values verified.
    Resp,
    /// A fixed payload; the reply ends at a delimiter or after N bytes.
    Raw,
}

/// `lunet load`: drive a server with connections and report latencies.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Durations are written 500ms, 10s, 2m (a bare number is seconds). \
    See docs/connector.md for every option with an example."
)]
pub struct LoadArgs {
    /// Server address, IP:PORT (or localhost:PORT).
    pub addr: String,

    /// Built-in workload.
    #[arg(
        short,
        long,
        value_enum,
        default_value = "echo",
        conflicts_with = "script"
    )]
    pub profile: Profile,

    /// Lua client script: it calls load.run(function(sock) ... end).
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,

    /// KEY=VALUE pairs a script reads with lunet.getenv (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Connections kept open.
    #[arg(short, long, default_value_t = 50)]
    pub connections: usize,

    /// Client threads (each with its own poll loop, or its own Lua service).
    #[arg(short, long, default_value_t = 2)]
    pub threads: usize,

    /// Measured time.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Time before the measured window: load runs, nothing is recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Total requests per second (open loop). Latency counts from each
    /// request's intended send time. 0 = closed loop, as fast as replies come.
    #[arg(short = 'R', long, default_value_t = 0.0)]
    pub rate: f64,

    /// New connections per second, all threads together (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,

    /// Longest wait for a connect or a reply; longer counts as an error.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Local addresses to bind before connecting, `A,B` or `A-B` (IPv4
    /// range), used in turn: a source address adds ~28k ports per target.
    #[arg(long, value_name = "ADDRS")]
    pub source: Option<String>,

    /// Open N idle connections, hold them for the duration, report how many are up.
    #[arg(long, value_name = "N", conflicts_with_all = ["script", "rate"])]
    pub hold: Option<usize>,

    /// Requests in flight per connection (pipelining depth).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// echo: line length in bytes, newline included.
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// http: request method (a body is sent with POST/PUT).
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// http: request target.
    #[arg(long, default_value = "/")]
    pub path: String,

    /// http: extra header line `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// http: request body (sets Content-Length).
    #[arg(long)]
    pub body: Option<String>,

    /// http: request body of N bytes of 'x' (instead of --body).
    #[arg(long, value_name = "N", conflicts_with = "body")]
    pub body_size: Option<usize>,

    /// resp: SET:GET ratio.
    #[arg(long, default_value = "1:10")]
    pub ratio: String,

    /// resp: keys are PREFIX0 .. PREFIX(N-1), picked at random.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,

    /// resp: key prefix.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,

    /// resp: value length in bytes.
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// raw: file whose bytes are one request.
    #[arg(long, value_name = "FILE", conflicts_with = "payload_text")]
    pub payload: Option<PathBuf>,

    /// raw: one request as text; \n \r \t \\ \xHH are unescaped.
    #[arg(long, value_name = "TEXT")]
    pub payload_text: Option<String>,

    /// raw: a reply ends after this delimiter (escapes as --payload-text).
    #[arg(long, value_name = "DELIM", conflicts_with = "reply_bytes")]
    pub until: Option<String>,

    /// raw: a reply is exactly N bytes.
    #[arg(long, value_name = "N")]
    pub reply_bytes: Option<usize>,

    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write an HdrHistogram interval log (one histogram per second) to FILE.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// No progress lines, only the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `250us` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("bad duration '{text}' (write 500ms, 10s, 2m)");
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" => number / 1e6,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Parses `A,B,C` (any IPs) and `A-B` (an IPv4 range, inclusive), mixed.
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    const MAX_RANGE: u32 = 65_536;
    let mut sources = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((first, last)) = part.split_once('-') {
            let parse = |s: &str| {
                s.trim()
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("--source: '{s}' in '{part}' is not an IPv4 address"))
            };
            let (first, last) = (u32::from(parse(first)?), u32::from(parse(last)?));
            if last < first || last - first >= MAX_RANGE {
                return Err(format!(
                    "--source: range '{part}' is empty or longer than {MAX_RANGE} addresses"
                ));
            }
            sources.extend((first..=last).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
        } else {
            let ip = part
                .parse::<IpAddr>()
                .map_err(|_| format!("--source: '{part}' is not an IP address"))?;
            sources.push(ip);
        }
    }
    if sources.is_empty() {
        return Err("--source: no address given".into());
    }
    Ok(sources)
}

/// Turns `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH` into bytes.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        index += 1;
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        let Some(&next) = bytes.get(index) else {
            return Err(format!("'{text}' ends with a lone backslash"));
        };
        index += 1;
        match next {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = text
                    .get(index..index + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("'{text}': \\x needs two hex digits"))?;
                out.push(hex);
                index += 2;
            }
            other => return Err(format!("'{text}': unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// What each connection does.
#[derive(Clone, Debug)]
pub enum Workload {
    Echo {
        size: usize,
    },
    Http(HttpSpec),
    Resp(RespSpec),
    Raw(RawSpec),
    /// Idle connections (`--hold`).
    Hold,
    Script {
        path: PathBuf,
        env: Vec<(String, String)>,
        /// The request `load.http.request()` gives without options: the
        /// http profile's (--method, --path, --header, --body).
        http: HttpSpec,
    },
}

#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// One whole request, built once.
    pub request: Vec<u8>,
    /// HEAD responses have no body.
    pub head: bool,
}

#[derive(Clone, Debug)]
pub struct RespSpec {
    pub sets: u32,
    pub gets: u32,
    pub keys: u64,
    pub prefix: String,
    pub value_size: usize,
}

#[derive(Clone, Debug)]
pub struct RawSpec {
    pub payload: Vec<u8>,
    pub end: RawEnd,
}

#[derive(Clone, Debug)]
pub enum RawEnd {
    Delimiter(Vec<u8>),
    Bytes(usize),
}

/// A checked run: everything the engines need, nothing left to parse.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: SocketAddr,
    pub target_text: String,
    pub workload: Workload,
    pub profile_name: String,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests per second, all connections together; 0 = closed loop.
    pub rate: f64,
    pub connect_rate: f64,
    pub timeout: Duration,
    pub sources: Vec<IpAddr>,
    pub pipeline: usize,
    pub json: Option<PathBuf>,
    pub hdr_log: Option<PathBuf>,
    pub quiet: bool,
}

impl Plan {
    pub fn open_loop(&self) -> bool {
        self.rate > 0.0
    }

    pub fn hold(&self) -> bool {
        matches!(self.workload, Workload::Hold)
    }

    /// Connections of thread `thread`: the remainder goes to the first ones.
    pub fn connections_of(&self, thread: usize) -> usize {
        self.connections / self.threads + usize::from(thread < self.connections % self.threads)
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

impl LoadArgs {
    /// Checks the options against each other and builds the plan.
    pub fn plan(&self) -> Result<Plan, Error> {
        let target = lunet_core::net::parse_addr(&self.addr)
            .map_err(|e| bad(format!("target '{}': {e}", self.addr)))?;
        let connections = self.hold.unwrap_or(self.connections);
        if connections == 0 {
            return Err(bad("need at least one connection (-c)"));
        }
        if self.threads == 0 {
            return Err(bad("need at least one thread (-t)"));
        }
        if self.duration.is_zero() {
            return Err(bad("--duration must be more than 0"));
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(bad("-R must be a rate >= 0"));
        }
        if !(self.connect_rate >= 0.0 && self.connect_rate.is_finite()) {
            return Err(bad("--connect-rate must be >= 0"));
        }
        if self.timeout.is_zero() {
            return Err(bad("--timeout must be more than 0"));
        }
        if self.pipeline == 0 {
            return Err(bad("--pipeline must be at least 1"));
        }
        let sources = match &self.source {
            Some(text) => parse_sources(text).map_err(bad)?,
            None => Vec::new(),
        };
        if sources.iter().any(|s| s.is_ipv4() != target.is_ipv4()) {
            return Err(bad(
                "--source addresses and the target must be the same IP version",
            ));
        }
        let (workload, profile_name) = if let Some(path) = &self.script {
            let mut env = Vec::new();
            for pair in &self.set {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(format!("--set expects KEY=VALUE, got '{pair}'")))?;
                env.push((key.to_string(), value.to_string()));
            }
            let workload = Workload::Script {
                path: path.clone(),
                env,
                http: self.http_spec(target)?,
            };
            (workload, format!("script {}", path.display()))
        } else if self.hold.is_some() {
            (Workload::Hold, "hold".to_string())
        } else {
            let workload = match self.profile {
                Profile::Echo => {
                    if self.size == 0 {
                        return Err(bad("--size must be at least 1 (the newline)"));
                    }
                    Workload::Echo { size: self.size }
                }
                Profile::Http => Workload::Http(self.http_spec(target)?),
                Profile::Resp => Workload::Resp(self.resp_spec()?),
                Profile::Raw => Workload::Raw(self.raw_spec()?),
            };
            let name = format!("{:?}", self.profile).to_lowercase();
            (workload, name)
        };
        Ok(Plan {
            target,
            target_text: self.addr.clone(),
            workload,
            profile_name,
            connections,
            threads: self.threads.min(connections),
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            connect_rate: self.connect_rate,
            timeout: self.timeout,
            sources,
            pipeline: self.pipeline,
            json: self.json.clone(),
            hdr_log: self.hdr_log.clone(),
            quiet: self.quiet,
        })
    }

    fn http_spec(&self, target: SocketAddr) -> Result<HttpSpec, Error> {
        let method = self.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(bad(format!(
                "--method '{}' is not an HTTP method",
                self.method
            )));
        }
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            return Err(bad(format!(
                "--path '{}' must start with / and have no spaces",
                self.path
            )));
        }
        let body: Vec<u8> = match (&self.body, self.body_size) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(size)) => vec![b'x'; size],
            (None, None) => Vec::new(),
        };
        let mut request = format!("{method} {} HTTP/1.1\r\n", self.path);
        let has_host = self
            .headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"));
        if !has_host {
            request.push_str(&format!("Host: {target}\r\n"));
        }
        for header in &self.headers {
            if !header.contains(':') || header.contains(['\r', '\n']) {
                return Err(bad(format!("--header '{header}' must be 'Name: value'")));
            }
            request.push_str(header);
            request.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(&body);
        Ok(HttpSpec {
            request,
            head: method == "HEAD",
        })
    }

    fn resp_spec(&self) -> Result<RespSpec, Error> {
        let ratio = || {
            bad(format!(
                "--ratio '{}' must be SETS:GETS, e.g. 1:10",
                self.ratio
            ))
        };
        let (sets, gets) = self.ratio.split_once(':').ok_or_else(ratio)?;
        let sets: u32 = sets.trim().parse().map_err(|_| ratio())?;
        let gets: u32 = gets.trim().parse().map_err(|_| ratio())?;
        if sets + gets == 0 {
            return Err(ratio());
        }
        if self.keys == 0 {
            return Err(bad("--keys must be at least 1"));
        }
        Ok(RespSpec {
            sets,
            gets,
            keys: self.keys,
            prefix: self.key_prefix.clone(),
            value_size: self.value_size,
        })
    }

    fn raw_spec(&self) -> Result<RawSpec, Error> {
        let payload = match (&self.payload, &self.payload_text) {
            (Some(path), _) => std::fs::read(path)
                .map_err(|e| bad(format!("--payload {}: {e}", path.display())))?,
            (None, Some(text)) => unescape(text).map_err(bad)?,
            (None, None) => return Err(bad("raw needs --payload FILE or --payload-text TEXT")),
        };
        if payload.is_empty() {
            return Err(bad("raw: the payload is empty"));
        }
        let end = match (&self.until, self.reply_bytes) {
            (Some(text), _) => {
                let delimiter = unescape(text).map_err(bad)?;
                if delimiter.is_empty() {
                    return Err(bad("--until must not be empty"));
                }
                RawEnd::Delimiter(delimiter)
            }
            (None, Some(0)) => return Err(bad("--reply-bytes must be at least 1")),
            (None, Some(n)) => RawEnd::Bytes(n),
            (None, None) => return Err(bad("raw needs --until DELIM or --reply-bytes N")),
        };
        Ok(RawSpec { payload, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sources() {
        let ips = parse_sources("127.0.0.1-127.0.0.4").unwrap();
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[3], "127.0.0.4".parse::<IpAddr>().unwrap());
        let ips = parse_sources("127.0.0.2, 127.0.0.9").unwrap();
        assert_eq!(ips.len(), 2);
        assert!(parse_sources("127.0.0.4-127.0.0.1").is_err());
        assert!(parse_sources("nope").is_err());
        assert!(parse_sources("").is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"PING\r\n").unwrap(), b"PING\r\n");
        assert_eq!(unescape(r"a\x41\\").unwrap(), b"aA\\");
        assert!(unescape(r"\q").is_err());
        assert!(unescape("x\\").is_err());
    }
}
