//! `put`, `get`, `del`, `txn`, `compaction`.

use std::io::Read;

use crate::args::{CompactionArgs, DelArgs, GetArgs, PutArgs, TxnArgs};
use crate::commands::Ctx;
use crate::error::{CliError, CliResult, exit};
use crate::golit::parse_go_int;
use crate::output::{DelJson, Format, Out, PutJson, RangeJson, TxnJson};
use crate::request::{del_op, get_op, os_text, put_op};

/// `put KEY [VALUE]` (the value from stdin when not given).
pub fn put(ctx: &Ctx, a: &PutArgs, stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    let put = put_op(a, stdin)?;
    let r = ctx.with_store(|s| s.put_with(put).map_err(|e| CliError::store(&e)))?;
    match ctx.format {
        Format::Simple => out.put(&r),
        Format::Json => out.json(&PutJson::new(&r, true))?,
    }
    Ok(())
}

/// `get KEY [RANGE_END]`.
pub fn get(ctx: &Ctx, a: &GetArgs, out: &mut Out) -> CliResult {
    let range = get_op(a)?;
    let r = ctx.with_store(|s| s.range(&range).map_err(|e| CliError::store(&e)))?;
    match ctx.format {
        Format::Simple if range.count_only => out.line(r.count.to_string()),
        Format::Simple => out.range(&r, a.print_value_only),
        // etcdctl checks this after the request, as here.
        Format::Json if a.print_value_only => {
            return Err(CliError::bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        Format::Json => out.json(&RangeJson::new(&r, true))?,
    }
    Ok(())
}

/// `del KEY [RANGE_END]`.
pub fn del(ctx: &Ctx, a: &DelArgs, out: &mut Out) -> CliResult {
    let d = del_op(a)?;
    let r = ctx.with_store(|s| s.delete_range(d).map_err(|e| CliError::store(&e)))?;
    match ctx.format {
        Format::Simple => out.del(&r),
        Format::Json => out.json(&DelJson::new(&r, true))?,
    }
    Ok(())
}

/// `txn [-i]`, its input on stdin.
pub fn txn(ctx: &Ctx, a: &TxnArgs, stdin: &mut dyn Read, out: &mut Out) -> CliResult {
    if !a.args.is_empty() {
        return Err(CliError::bad_args("txn command does not accept argument"));
    }
    let mut input = Vec::new();
    stdin
        .read_to_end(&mut input)
        .map_err(|e| CliError::new(exit::INVALID_INPUT, e.to_string()))?;
    let txn = crate::txn::read_txn(&input, |prompt| {
        if a.interactive {
            out.line(prompt);
        }
    })?;
    let r = ctx.with_store(|s| s.txn(txn).map_err(|e| CliError::store(&e)))?;
    match ctx.format {
        Format::Simple => out.txn(&r),
        Format::Json => out.json(&TxnJson::new(&r, true))?,
    }
    Ok(())
}

/// `compaction REV`.
pub fn compaction(ctx: &Ctx, a: &CompactionArgs, out: &mut Out) -> CliResult {
    let [arg] = a.args.as_slice() else {
        return Err(CliError::bad_args("compaction command needs 1 argument"));
    };
    let rev = parse_go_int(&os_text(arg), 10).map_err(|e| CliError::new(exit::ERROR, e))?;
    ctx.with_store(|s| s.compact(rev).map_err(|e| CliError::store(&e)))?;
    // etcdctl prints this in every output format.
    out.line(format!("compacted revision {rev}"));
    Ok(())
}
