//! etcd requests from parsed arguments, with etcdctl's checks and messages; shared by the
//! `put`, `get` and `del` commands and by a txn's op lines.

use std::ffi::OsString;
use std::io::Read;

use batchkv::{DeleteRange, Put, Range, SortOrder, SortTarget};
use bytes::Bytes;

use crate::args::{DelArgs, GetArgs, PutArgs};
use crate::error::{CliError, CliResult, exit};
use crate::golit::{go_quote, parse_go_int};

/// An argument's bytes (keys and values need not be UTF-8).
pub fn os_bytes(s: &OsString) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        s.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        s.to_string_lossy().into_owned().into_bytes()
    }
}

/// An argument as text (for numbers, lease ids, paths in messages).
pub fn os_text(s: &OsString) -> String {
    s.to_string_lossy().into_owned()
}

/// etcdctl's `put`: the value from the arguments, or from `stdin` when only a key is given.
pub fn put_op(a: &PutArgs, stdin: &mut dyn Read) -> CliResult<Put> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else {
        return Err(CliError::bad_args(NEEDS));
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CliError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        match a.args.get(1) {
            Some(v) => value = os_bytes(v),
            None => {
                if stdin.read_to_end(&mut value).is_err() || value.is_empty() {
                    return Err(CliError::bad_args(NEEDS));
                }
            }
        }
    }
    let lease = parse_go_int(&a.lease, 16)
        .map_err(|e| CliError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(Put {
        key: os_bytes(key).into(),
        value: value.into(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// etcd's key and range end for a key, an optional range end, `--prefix` and `--from-key`
/// (clientv3's `WithPrefix`, `WithFromKey`, `WithRange`).
pub fn key_range(args: &[OsString], prefix: bool, from_key: bool) -> CliResult<(Bytes, Bytes)> {
    if prefix && from_key {
        return Err(CliError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let key = args.first().map(os_bytes).unwrap_or_default();
    if args.len() > 1 {
        if prefix || from_key {
            return Err(CliError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` \
                 is set",
            ));
        }
        return Ok((key.into(), os_bytes(&args[1]).into()));
    }
    if prefix {
        let r = Range::prefix(&key);
        return Ok((r.key, r.range_end));
    }
    if from_key {
        let from = if key.is_empty() { vec![0] } else { key };
        return Ok((from.into(), Bytes::from_static(b"\0")));
    }
    Ok((key.into(), Bytes::new()))
}

/// etcdctl's `get`.
pub fn get_op(a: &GetArgs) -> CliResult<Range> {
    if a.args.is_empty() {
        return Err(CliError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CliError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if !matches!(a.consistency.as_str(), "l" | "s") {
        return Err(CliError::new(
            exit::BAD_FEATURE,
            format!("unknown consistency flag {}", go_quote(&a.consistency)),
        ));
    }
    let (key, range_end) = key_range(&a.args, a.prefix, a.from_key)?;
    let mut sort_order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return Err(CliError::new(
                exit::BAD_FEATURE,
                format!("bad sort order {}", a.order),
            ));
        }
    };
    let sort_target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(CliError::new(
                exit::BAD_FEATURE,
                format!("bad sort target {}", a.sort_by),
            ));
        }
    };
    // clientv3's WithSort: the server returns keys in ascending key order anyway.
    if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
        sort_order = SortOrder::None;
    }
    if a.keys_only && a.count_only {
        return Err(CliError::bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    Ok(Range {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev.max(0),
        sort_order,
        sort_target,
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Range::default()
    })
}

/// etcdctl's `del`.
pub fn del_op(a: &DelArgs) -> CliResult<DeleteRange> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CliError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    let (key, range_end) = key_range(&a.args, a.prefix, a.from_key)?;
    Ok(DeleteRange {
        key,
        range_end,
        prev_kv: a.prev_kv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(args: &[&str], prefix: bool, from_key: bool) -> (Bytes, Bytes) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        key_range(&args, prefix, from_key).expect("a key range")
    }

    #[test]
    fn key_ranges_are_clientv3s() {
        let b = Bytes::from_static;
        assert_eq!(range(&["a"], false, false), (b(b"a"), b(b"")));
        assert_eq!(range(&["a", "c"], false, false), (b(b"a"), b(b"c")));
        assert_eq!(range(&["a"], true, false), (b(b"a"), b(b"b")));
        assert_eq!(range(&[""], true, false), (b(b"\0"), b(b"\0")));
        assert_eq!(range(&["a"], false, true), (b(b"a"), b(b"\0")));
        assert_eq!(range(&[""], false, true), (b(b"\0"), b(b"\0")));
        let args = [OsString::from("a"), OsString::from("b")];
        assert_eq!(
            key_range(&args, true, false).map_err(|e| e.code),
            Err(exit::BAD_ARGS)
        );
    }
}
