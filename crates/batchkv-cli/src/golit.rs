//! Go's literal syntax, as etcdctl (a Go program) reads its arguments and writes its messages:
//! `strconv.ParseInt`, `strconv.ParseBool`, `strconv.Unquote` of a literal at the start of a
//! string, `%q` and `%016x`. Each error text is Go's, because the differential test compares
//! etcdctl's error lines with ours byte for byte.

/// Go's `strconv.ParseInt(s, base, 64)` (base 0: `0x`, `0o`, `0b` and `0` prefixes, and `_`
/// between digits); the error is Go's message.
pub fn parse_go_int(s: &str, base: u32) -> Result<i64, String> {
    let syntax = || format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(s));
    let range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(s)
        )
    };
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if base == 0 {
        let lower = body.to_ascii_lowercase();
        if lower.starts_with("0x") {
            (16, &body[2..])
        } else if lower.starts_with("0o") {
            (8, &body[2..])
        } else if lower.starts_with("0b") {
            (2, &body[2..])
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        }
    } else {
        (base, body)
    };
    let digits: String = if base == 0 {
        digits.replace('_', "")
    } else {
        digits.to_owned()
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    let mag = u64::from_str_radix(&digits, radix).map_err(|_| range())?;
    if neg {
        if mag > i64::MAX as u64 + 1 {
            return Err(range());
        }
        Ok((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).map_err(|_| range())
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// Go's `%q` of a string (close enough for messages).
pub fn go_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c if c.is_control() => q.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Go's `%016x` of an int64 (a negative one keeps its sign), as etcdctl prints lease ids.
pub fn go_hex16(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

/// A Go string literal at the start of `s` (`"..."` with Go's escapes, or `` `...` ``): its
/// bytes and how many input bytes it took. The error is Go's (`invalid syntax`, ...).
pub fn go_unquote(s: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    match s.first() {
        Some(b'`') => {
            let n = s[1..]
                .iter()
                .position(|&b| b == b'`')
                .ok_or("unexpected EOF")?;
            let raw: Vec<u8> = s[1..=n].iter().copied().filter(|&b| b != b'\r').collect();
            Ok((raw, n + 2))
        }
        Some(b'"') => unquote_interpreted(s),
        _ => Err("expected quoted string"),
    }
}

/// A `"..."` literal at the start of `s` (which starts with `"`).
fn unquote_interpreted(s: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    let digits = |from: usize, n: usize, radix: u32| -> Result<u32, &'static str> {
        let d = s.get(from..from + n).ok_or("invalid syntax")?;
        let d = std::str::from_utf8(d).map_err(|_| "invalid syntax")?;
        u32::from_str_radix(d, radix).map_err(|_| "invalid syntax")
    };
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let Some(&c) = s.get(i) else {
            return Err("unexpected EOF");
        };
        match c {
            b'"' => return Ok((out, i + 1)),
            b'\n' => return Err("invalid syntax"),
            b'\\' => {
                let e = *s.get(i + 1).ok_or("unexpected EOF")?;
                i += 2;
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'\\' | b'"' | b'\'' => out.push(e),
                    b'x' => {
                        out.push(u8::try_from(digits(i, 2, 16)?).map_err(|_| "invalid syntax")?);
                        i += 2;
                    }
                    b'0'..=b'7' => {
                        let v = digits(i - 1, 3, 8)?;
                        out.push(u8::try_from(v).map_err(|_| "invalid syntax")?);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let ch = char::from_u32(digits(i, n, 16)?).ok_or("invalid syntax")?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    _ => return Err("invalid syntax"),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_numbers() {
        assert_eq!(parse_go_int("694d", 16), Ok(0x694d));
        assert_eq!(parse_go_int("0x10", 0), Ok(16));
        assert_eq!(parse_go_int("010", 0), Ok(8));
        assert_eq!(parse_go_int("0b1_1", 0), Ok(3));
        assert_eq!(parse_go_int("-3", 10), Ok(-3));
        assert_eq!(parse_go_int("-9223372036854775808", 10), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("zz", 16),
            Err("strconv.ParseInt: parsing \"zz\": invalid syntax".to_owned())
        );
        assert_eq!(
            parse_go_int("9223372036854775808", 10),
            Err("strconv.ParseInt: parsing \"9223372036854775808\": value out of range".to_owned())
        );
        assert_eq!(parse_go_int("", 0).map_err(|_| ()), Err(()));
        assert_eq!(go_hex16(0x694d), "000000000000694d");
        assert_eq!(go_hex16(-1), "-000000000000001");
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("T"), Ok(true));
        assert_eq!(parse_go_bool("0"), Ok(false));
        assert_eq!(
            parse_go_bool("maybe"),
            Err("strconv.ParseBool: parsing \"maybe\": invalid syntax".to_owned())
        );
    }

    #[test]
    fn go_literals() {
        let check = |input: &[u8], want: Result<(&[u8], usize), &str>| {
            let got = go_unquote(input);
            let got = got
                .as_ref()
                .map(|(b, n)| (b.as_slice(), *n))
                .map_err(|e| *e);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        };
        check(br#""k\x41" rest"#, Ok((b"kA", 7)));
        check(br#""\101\t\u00e9""#, Ok(("A\t\u{e9}".as_bytes(), 14)));
        check(b"`raw\\n\r` x", Ok((b"raw\\n", 8)));
        check(br#""\q""#, Err("invalid syntax"));
        check(br#""\x4""#, Err("invalid syntax"));
        check(br#""\400""#, Err("invalid syntax"));
        check(b"\"open", Err("unexpected EOF"));
        check(b"\"a\nb\"", Err("invalid syntax"));
        check(b"plain", Err("expected quoted string"));
        assert_eq!(go_quote("a\"b\\\n\u{1}"), r#""a\"b\\\n\x01""#);
    }
}
