//! etcdctl's txn input: compares, a blank line, success ops, a blank line, failure ops, a blank
//! line; each op line is a `put`, `get` or `del` command line (words as etcdctl's `argify`
//! splits them), each compare is `TARGET("key") OP "value"`.

use std::ffi::OsString;

use batchkv::{Compare, CompareOp, CompareTarget, Op, Txn};

use crate::args::{TxnOp, parse_txn_op};
use crate::error::{CliError, CliResult, exit};
use crate::golit::{go_quote, go_unquote, parse_go_int};
use crate::request::{del_op, get_op, put_op};

/// Reads a txn from etcdctl's input format. `prompt` is called before each section with
/// etcdctl's interactive prompt (`compares:`, ...).
pub fn read_txn(input: &[u8], mut prompt: impl FnMut(&str)) -> CliResult<Txn> {
    let mut lines = Lines { data: input, at: 0 };
    prompt("compares:");
    let mut compares = Vec::new();
    while let Some(line) = lines.next_section_line()? {
        compares.push(parse_compare(line)?);
    }
    prompt("success requests (get, put, del):");
    let success = read_ops(&mut lines)?;
    prompt("failure requests (get, put, del):");
    let failure = read_ops(&mut lines)?;
    Ok(Txn {
        compares,
        success,
        failure,
    })
}

/// bufio's `ReadString('\n')` over stdin, as etcdctl's txn reads it.
struct Lines<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Lines<'a> {
    /// The next line of a section, trimmed; `None` at the blank line that ends the section.
    /// Input that ends without a newline is etcdctl's `EOF` error.
    fn next_section_line(&mut self) -> CliResult<Option<&'a [u8]>> {
        let rest = &self.data[self.at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(CliError::new(exit::INVALID_INPUT, "EOF"));
        };
        self.at += nl + 1;
        let line = rest[..nl].trim_ascii();
        Ok((!line.is_empty()).then_some(line))
    }
}

fn read_ops(lines: &mut Lines<'_>) -> CliResult<Vec<Op>> {
    let mut ops = Vec::new();
    while let Some(line) = lines.next_section_line()? {
        ops.push(parse_op(line)?);
    }
    Ok(ops)
}

/// One op line: `put ...`, `get ...` or `del ...` with those commands' flags.
pub fn parse_op(line: &[u8]) -> CliResult<Op> {
    let text = String::from_utf8_lossy(line).into_owned();
    let words = argify(line)?;
    if words.len() < 2 {
        // (sic: etcdctl's word)
        return Err(CliError::new(
            exit::INVALID_INPUT,
            format!("invalid txn compare request: {text}"),
        ));
    }
    let invalid = || CliError::new(exit::INVALID_INPUT, format!("invalid txn request: {text}"));
    let words = words.into_iter().map(os_string).collect();
    Ok(match parse_txn_op(words).map_err(|_| invalid())? {
        TxnOp::Put(a) => Op::Put(put_op(&a, &mut std::io::empty())?),
        TxnOp::Get(a) => Op::Range(get_op(&a)?),
        TxnOp::Del(a) => Op::DeleteRange(del_op(&a)?),
    })
}

#[cfg(unix)]
fn os_string(b: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(b)
}

#[cfg(not(unix))]
fn os_string(b: Vec<u8>) -> OsString {
    OsString::from(String::from_utf8_lossy(&b).into_owned())
}

/// etcdctl's `argify`: words, "double-quoted" (Go escapes) and 'single-quoted' strings.
pub fn argify(line: &[u8]) -> CliResult<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            // A closed "..." is a Go string literal; an unclosed quote is skipped.
            let mut j = i + 1;
            let mut closed = None;
            while j < line.len() {
                match line[j] {
                    b'\\' => j += 2,
                    b'"' => {
                        closed = Some(j);
                        break;
                    }
                    _ => j += 1,
                }
            }
            match closed {
                Some(end) => {
                    let (s, _) = go_unquote(&line[i..=end])
                        .map_err(|e| CliError::new(exit::INVALID_INPUT, e))?;
                    args.push(s);
                    i = end + 1;
                }
                None => i += 1,
            }
            continue;
        }
        if c == b'\'' {
            match line[i + 1..].iter().position(|&b| b == b'\'') {
                Some(n) => {
                    args.push(line[i + 1..i + 1 + n].to_vec());
                    i += n + 2;
                }
                None => i += 1,
            }
            continue;
        }
        let start = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        args.push(line[start..i].to_vec());
    }
    Ok(args)
}

/// etcdctl's compare syntax: `TARGET("key") OP "value"`.
pub fn parse_compare(line: &[u8]) -> CliResult<Compare> {
    let text = String::from_utf8_lossy(line).into_owned();
    let invalid = |msg: String| CliError::new(exit::INVALID_INPUT, msg);
    let Some(lp) = line.iter().position(|&b| b == b'(') else {
        return Err(invalid(format!("malformed comparison: {text}")));
    };
    let target = String::from_utf8_lossy(&line[..lp]).into_owned();
    let rest = &line[lp + 1..];
    // Sscanf("%q) %s %q"): a quoted key, ')', an operator word, a quoted value.
    let mut key: Option<Vec<u8>> = None;
    let mut op = String::new();
    let mut val: Option<Vec<u8>> = None;
    let mut i = skip_spaces(rest, 0);
    if let Ok((k, n)) = go_unquote(&rest[i..]) {
        key = Some(k);
        i += n;
        // Go's Sscanf: a space in the format needs at least one space in the input.
        if rest.get(i) == Some(&b')') && rest.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i = skip_spaces(rest, i + 1);
            let start = i;
            while i < rest.len() && !rest[i].is_ascii_whitespace() {
                i += 1;
            }
            op = String::from_utf8_lossy(&rest[start..i]).into_owned();
            i = skip_spaces(rest, i);
            if !op.is_empty()
                && let Ok((v, _)) = go_unquote(&rest[i..])
            {
                val = Some(v);
            }
        }
    }
    let (Some(key), Some(val)) = (key.clone(), val.clone()) else {
        return Err(invalid(format!(
            "malformed comparison: {text}; got {target}({}) {op} {}",
            go_quote(&String::from_utf8_lossy(key.as_deref().unwrap_or_default())),
            go_quote(&String::from_utf8_lossy(val.as_deref().unwrap_or_default())),
        )));
    };
    let cmp_op = match op.as_str() {
        "=" => CompareOp::Equal,
        "!=" => CompareOp::NotEqual,
        ">" => CompareOp::Greater,
        "<" => CompareOp::Less,
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {text} (unknown operator {op})"
            )));
        }
    };
    let val_str = String::from_utf8_lossy(&val).into_owned();
    let number = |base| {
        parse_go_int(&val_str, base)
            .map_err(|_| invalid(format!("invalid txn compare request: {text}")))
    };
    let target = match target.as_str() {
        "ver" | "version" => CompareTarget::Version(number(10)?),
        "c" | "create" => CompareTarget::CreateRevision(number(10)?),
        "m" | "mod" => CompareTarget::ModRevision(number(10)?),
        "val" | "value" => CompareTarget::Value(val.into()),
        "lease" => CompareTarget::Lease(number(16)?),
        other => {
            return Err(invalid(format!(
                "malformed comparison: {text} (unknown target {other})"
            )));
        }
    };
    Ok(Compare::new(key, cmp_op, target))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn words(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn txn_input() {
        let c = parse_compare(br#"value("k\x41") != "v 1""#).expect("compare");
        assert_eq!(c.key.as_ref(), b"kA");
        assert_eq!(c.op, CompareOp::NotEqual);
        assert_eq!(c.target, CompareTarget::Value(Bytes::from_static(b"v 1")));
        let c = parse_compare(br#"mod("k") > "5""#).expect("compare");
        assert_eq!(c.target, CompareTarget::ModRevision(5));
        let c = parse_compare(br#"lease("k") = "694d""#).expect("compare");
        assert_eq!(c.target, CompareTarget::Lease(0x694d));
        let e = parse_compare(br#"value("a")="2""#).expect_err("malformed");
        assert_eq!(e.code, exit::INVALID_INPUT);
        let e = parse_compare(br#"value("a") ~ "2""#).expect_err("operator");
        assert_eq!(
            e.msg,
            r#"malformed comparison: value("a") ~ "2" (unknown operator ~)"#
        );
        assert_eq!(
            argify(br#"put "a b" 'c d' e"#).expect("argify"),
            words(&["put", "a b", "c d", "e"])
        );
        match parse_op(b"get a --prefix --limit=1").expect("op") {
            Op::Range(r) => {
                assert_eq!(
                    (r.key.as_ref(), r.range_end.as_ref(), r.limit),
                    (&b"a"[..], &b"b"[..], 1)
                );
            }
            other => panic!("not a range: {other:?}"),
        }
        let e = parse_op(b"get a --limit=x").expect_err("bad number");
        assert_eq!(
            e,
            CliError::new(exit::INVALID_INPUT, "invalid txn request: get a --limit=x")
        );
        let e = parse_op(b"put a").expect_err("no value");
        assert_eq!(e.code, exit::BAD_ARGS);
    }

    #[test]
    fn sections() {
        let mut prompts = Vec::new();
        let t = read_txn(b"ver(\"a\") = \"1\"\n\nput a 2\n\ndel a\n\n", |p| {
            prompts.push(p.to_owned())
        })
        .expect("txn");
        assert_eq!(
            (t.compares.len(), t.success.len(), t.failure.len()),
            (1, 1, 1)
        );
        assert_eq!(prompts.len(), 3);
        let e = read_txn(b"\nput a b\n", |_| {}).expect_err("EOF");
        assert_eq!(e, CliError::new(exit::INVALID_INPUT, "EOF"));
    }
}
