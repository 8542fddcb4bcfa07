//! `lease grant|revoke|keep-alive|timetolive|list`.

use std::ffi::OsString;

use crate::args::{KeepAliveArgs, LeaseIdArgs, TimeToLiveArgs};
use crate::commands::Ctx;
use crate::error::{CliError, CliResult, etcd_message, exit};
use crate::golit::{go_hex16, parse_go_int};
use crate::output::{
    Format, HeaderOnlyJson, KeepAliveJson, LeaseGrantJson, LeasesJson, Out, TimeToLiveJson,
};
use crate::request::os_text;

/// The one argument of a lease command: a lease id in hex.
fn lease_id(args: &[OsString], needs: &str) -> CliResult<i64> {
    let [arg] = args else {
        return Err(CliError::bad_args(needs));
    };
    parse_go_int(&os_text(arg), 16)
        .map_err(|e| CliError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// `lease grant TTL`.
pub fn grant(ctx: &Ctx, a: &LeaseIdArgs, out: &mut Out) -> CliResult {
    let [arg] = a.args.as_slice() else {
        return Err(CliError::bad_args("lease grant command needs TTL argument"));
    };
    let ttl = parse_go_int(&os_text(arg), 10)
        .map_err(|e| CliError::bad_args(format!("bad TTL ({e})")))?;
    let r = ctx.with_store(|s| {
        s.lease_grant(0, ttl).map_err(|e| {
            CliError::new(
                exit::ERROR,
                format!("failed to grant lease ({})", etcd_message(&e)),
            )
        })
    })?;
    match ctx.format {
        Format::Simple => out.line(format!(
            "lease {} granted with TTL({}s)",
            go_hex16(r.id),
            r.ttl
        )),
        Format::Json => out.json(&LeaseGrantJson::new(r.revision, r.id, r.ttl))?,
    }
    Ok(())
}

/// `lease revoke ID`.
pub fn revoke(ctx: &Ctx, a: &LeaseIdArgs, out: &mut Out) -> CliResult {
    let id = lease_id(&a.args, "lease revoke command needs 1 argument")?;
    let r = ctx.with_store(|s| {
        s.lease_revoke(id).map_err(|e| {
            CliError::new(
                exit::ERROR,
                format!("failed to revoke lease ({})", etcd_message(&e)),
            )
        })
    })?;
    match ctx.format {
        Format::Simple => out.line(format!("lease {} revoked", go_hex16(id))),
        Format::Json => out.json(&HeaderOnlyJson::new(r.revision))?,
    }
    Ok(())
}

/// `lease timetolive ID [--keys]`.
pub fn time_to_live(ctx: &Ctx, a: &TimeToLiveArgs, out: &mut Out) -> CliResult {
    let id = lease_id(
        &a.args,
        "lease timetolive command needs lease ID as argument",
    )?;
    let (t, rev) =
        ctx.with_store(|s| Ok((s.lease_time_to_live(id, a.keys), s.current_revision())))?;
    match ctx.format {
        Format::Simple if t.granted_ttl == 0 && t.ttl == -1 => {
            out.line(format!("lease {} already expired", go_hex16(id)));
        }
        Format::Simple => {
            let mut line = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                go_hex16(id),
                t.granted_ttl,
                t.ttl
            )
            .into_bytes();
            if a.keys {
                line.extend_from_slice(b", attached keys([");
                for (i, k) in t.keys.iter().enumerate() {
                    if i > 0 {
                        line.push(b' ');
                    }
                    line.extend_from_slice(k);
                }
                line.extend_from_slice(b"])");
            }
            out.line(line);
        }
        Format::Json => out.json(&TimeToLiveJson::new(rev, id, t.ttl, t.granted_ttl, &t.keys))?,
    }
    Ok(())
}

/// `lease keep-alive --once ID`.
pub fn keep_alive(ctx: &Ctx, a: &KeepAliveArgs, out: &mut Out) -> CliResult {
    let id = lease_id(
        &a.args,
        "lease keep-alive command needs lease ID as argument",
    )?;
    if !a.once {
        return Err(CliError::new(
            exit::BAD_FEATURE,
            "batchkv supports `lease keep-alive --once` only (each command opens the data dir \
             and closes it when done)",
        ));
    }
    let (ttl, rev) = ctx.with_store(|s| {
        let ttl = s
            .lease_keep_alive(id)
            .map_err(|e| CliError::new(exit::BAD_CONNECTION, etcd_message(&e)))?;
        Ok((ttl, s.current_revision()))
    })?;
    match ctx.format {
        Format::Simple => out.line(format!("lease {} keepalived with TTL({ttl})", go_hex16(id))),
        Format::Json => out.json(&KeepAliveJson::new(rev, id, ttl))?,
    }
    Ok(())
}

/// `lease list`.
pub fn list(ctx: &Ctx, out: &mut Out) -> CliResult {
    let (ids, rev) = ctx.with_store(|s| Ok((s.leases(), s.current_revision())))?;
    match ctx.format {
        Format::Simple => {
            out.line(format!("found {} leases", ids.len()));
            for id in &ids {
                out.line(go_hex16(*id));
            }
        }
        Format::Json => out.json(&LeasesJson::new(rev, &ids))?,
    }
    Ok(())
}
