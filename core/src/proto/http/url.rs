//! Percent-decoding of a request's path and splitting of its query.
//!
//! A path is decoded once; `%` not followed by two hex digits, or a `%00`,
//! is a 400 (a decoded NUL would cut a C string or a file name). `+` stays
//! `+` in a path. A query (`application/x-www-form-urlencoded`, as browsers
//! send it) is split on `&` into ordered (key, value) pairs: empty pieces
//! are skipped, a piece without `=` has the value "", repeated keys are all
//! kept in order, `+` is a space, and the same percent rule applies (NUL
//! allowed there: a query value is data, not a name).
//! Results borrow the input unless something was decoded.

use std::borrow::Cow;

use super::Error;

/// The decoded bytes of a request path.
pub fn decode_path(raw: &str) -> Result<Cow<'_, [u8]>, Error> {
    let decoded = percent_decode(raw.as_bytes(), false)?;
    if matches!(decoded, Cow::Owned(_)) && decoded.contains(&0) {
        return Err(Error::BadRequest("NUL in the decoded path"));
    }
    Ok(decoded)
}

/// A key and a value of a query.
pub type Pair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The (key, value) pairs of a query, in order.
pub fn parse_query(raw: &str) -> Result<Vec<Pair<'_>>, Error> {
    raw.as_bytes()
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = match memchr::memchr(b'=', piece) {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &b""[..]),
            };
            Ok((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// `%XX` → the byte; `+` → a space when `plus_is_space`.
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Result<Cow<'_, [u8]>, Error> {
    if !raw
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        match raw[at] {
            b'%' => {
                let high = raw.get(at + 1).and_then(|&b| (b as char).to_digit(16));
                let low = raw.get(at + 2).and_then(|&b| (b as char).to_digit(16));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(Error::BadRequest("invalid percent-encoding"));
                };
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                at += 1;
            }
            other => {
                out.push(other);
                at += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Random;

    #[test]
    fn paths() {
        assert!(matches!(
            decode_path("/plain/path"),
            Ok(Cow::Borrowed(b"/plain/path"))
        ));
        assert_eq!(
            decode_path("/a%20b/c+d/%C3%A9").unwrap().as_ref(),
            "/a b/c+d/é".as_bytes()
        );
        assert_eq!(decode_path("/%2f%2F").unwrap().as_ref(), b"///");
        for bad in ["/%", "/%4", "/%zz", "/%00", "/a%0"] {
            assert!(decode_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries() {
        let pairs = parse_query("a=1&b=x+y&a=2&&flag&e=&%3D=%26&c=%00").unwrap();
        let text: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            text,
            vec![
                (&b"a"[..], &b"1"[..]),
                (b"b", b"x y"),
                (b"a", b"2"),
                (b"flag", b""),
                (b"e", b""),
                (b"=", b"&"),
                (b"c", b"\0"),
            ]
        );
        assert!(parse_query("a=%g0").is_err());
        assert!(parse_query("").unwrap().is_empty());
    }

    #[test]
    fn encode_then_decode_gives_the_bytes_back() {
        let mut random = Random::new(17);
        for _ in 0..500 {
            let len = random.below(30) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| 1 + random.below(255) as u8).collect();
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            assert_eq!(decode_path(&encoded).unwrap().as_ref(), &bytes[..]);
            let query = format!("k={encoded}");
            let pairs = parse_query(&query).unwrap();
            assert_eq!(pairs[0].1.as_ref(), &bytes[..]);
        }
    }
}
