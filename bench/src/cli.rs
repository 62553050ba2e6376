//! A tiny command-line parser: `--name value`, `--name=value` and `-n value`.
//!
//! Every option takes a value; `-h`/`--help` prints the usage. Bad input
//! prints the problem and the usage and exits with status 2, so a user never
//! sees a panic for a typo.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// Parsed options of one tool.
pub struct Args {
    usage: &'static str,
    values: HashMap<&'static str, String>,
}

impl Args {
    /// Parses the process arguments. `options` lists the accepted options;
    /// each entry is a list of spellings whose first one is the canonical
    /// name used with [`Args::get`], e.g. `&["--connections", "-c"]`.
    pub fn from_env(usage: &'static str, options: &[&[&'static str]]) -> Args {
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        match Args::parse(usage, options, &arguments) {
            Ok(args) => args,
            Err(message) => fail(usage, &message),
        }
    }

    fn parse(
        usage: &'static str,
        options: &[&[&'static str]],
        arguments: &[String],
    ) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut rest = arguments.iter();
        while let Some(argument) = rest.next() {
            if argument == "-h" || argument == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            let (spelling, inline) = match argument.split_once('=') {
                Some((name, value)) if argument.starts_with("--") => (name, Some(value)),
                _ => (argument.as_str(), None),
            };
            let canonical = options
                .iter()
                .find(|spellings| spellings.contains(&spelling))
                .map(|spellings| spellings[0])
                .ok_or_else(|| format!("unknown argument `{argument}`"))?;
            let value = match inline {
                Some(value) => value.to_string(),
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("`{spelling}` needs a value"))?,
            };
            values.insert(canonical, value);
        }
        Ok(Args { usage, values })
    }

    /// The value of `name` parsed as `T`, or `default` when it was not given.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|error| {
                fail(
                    self.usage,
                    &format!("bad value `{text}` for {name}: {error}"),
                )
            }),
        }
    }

    /// The value of `name`; exits with the usage when it is missing.
    pub fn required(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(text) => text.clone(),
            None => fail(self.usage, &format!("{name} is required")),
        }
    }

    /// The value of `name` as a duration (`5s`, `500ms`, `2m`, `1.5`), or
    /// `default` when it was not given.
    pub fn duration(&self, name: &str, default: Duration) -> Duration {
        match self.values.get(name) {
            None => default,
            Some(text) => parse_duration(text).unwrap_or_else(|| {
                fail(
                    self.usage,
                    &format!("bad duration `{text}` for {name} (try 5s, 500ms, 2m)"),
                )
            }),
        }
    }
}

/// Parses `5s`, `500ms`, `250us`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" => number / 1e6,
        "m" => number * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Prints an error and the usage, then exits with status 2.
pub fn fail(usage: &str, message: &str) -> ! {
    eprintln!("error: {message}\n\n{usage}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[&[&str]] = &[&["--connections", "-c"], &["--addr"]];

    fn parse(arguments: &[&str]) -> Result<Args, String> {
        let arguments: Vec<String> = arguments.iter().map(|s| s.to_string()).collect();
        Args::parse("usage", OPTIONS, &arguments)
    }

    #[test]
    fn spellings_and_inline_values() {
        let args = parse(&["-c", "7", "--addr=127.0.0.1:1"]).unwrap();
        assert_eq!(args.get("--connections", 0u32), 7);
        assert_eq!(args.required("--addr"), "127.0.0.1:1");
        assert_eq!(
            parse(&["--connections=3"]).unwrap().get("--connections", 0),
            3
        );
    }

    #[test]
    fn unknown_and_missing_values_are_errors() {
        assert!(parse(&["--nope", "1"]).is_err());
        assert!(parse(&["-c"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
