//! batchkv's own commands: `stats`, `checkpoint` and `check`.

use std::path::PathBuf;

use crate::args::{CheckArgs, CheckpointArgs};
use crate::commands::Ctx;
use crate::error::{CliError, CliResult, exit};
use crate::output::{CheckJson, CheckpointJson, Format, Out, StatsJson};

/// `stats`: the store's figures.
pub fn stats(ctx: &Ctx, out: &mut Out) -> CliResult {
    let st = ctx.with_store(|s| s.stats().map_err(|e| CliError::store(&e)))?;
    match ctx.format {
        Format::Simple => {
            out.line(format!("data dir: {}", ctx.data_dir.display()));
            out.line(format!("revision: {}", st.revision));
            out.line(format!(
                "compacted: {}",
                st.compacted.map_or("none".to_owned(), |c| c.to_string())
            ));
            out.line(format!("applied index: {}", st.applied_index));
            out.line(format!("keys (with history): {}", st.indexed_keys));
            out.line(format!("leases: {}", st.leases));
            out.line("engine:");
            out.stdout
                .extend_from_slice(st.engine.to_string().as_bytes());
            if !out.stdout.ends_with(b"\n") {
                out.stdout.push(b'\n');
            }
        }
        Format::Json => out.json(&StatsJson::from(&st))?,
    }
    Ok(())
}

/// `checkpoint DIR`: a consistent copy of the store.
pub fn checkpoint(ctx: &Ctx, a: &CheckpointArgs, out: &mut Out) -> CliResult {
    let [dir] = a.args.as_slice() else {
        return Err(CliError::bad_args(
            "checkpoint command needs 1 argument: the directory to create",
        ));
    };
    let dir = PathBuf::from(dir);
    let rev = ctx.with_store(|s| {
        let rev = s.current_revision();
        s.checkpoint(&dir).map_err(|e| CliError::store(&e))?;
        Ok(rev)
    })?;
    match ctx.format {
        Format::Simple => out.line(format!(
            "checkpoint at revision {rev} written to {}",
            dir.display()
        )),
        Format::Json => out.json(&CheckpointJson::new(rev, dir.display().to_string()))?,
    }
    Ok(())
}

/// `check`: opens the store read-only (so it works on a full disk and beside a running
/// writer, on the state of the moment it opened), verifies it whole and prints etcd's HashKV
/// digest: two copies of the same history print the same hash.
pub fn check(ctx: &Ctx, a: &CheckArgs, out: &mut Out) -> CliResult {
    let (report, at) = ctx.with_store_read_only(|s| {
        let report = s.check().map_err(|e| {
            CliError::new(
                exit::ERROR,
                format!("check of {} failed: {e}", ctx.data_dir.display()),
            )
        })?;
        let at = match a.rev {
            0 => None,
            rev => Some(s.hash_kv(rev).map_err(|e| CliError::store(&e))?),
        };
        Ok((report, at))
    })?;
    match ctx.format {
        Format::Simple => {
            let r = &report;
            out.line(format!("store at {}: OK", ctx.data_dir.display()));
            out.line(format!(
                "revision {}, compacted {}, pruned {}, applied index {}",
                r.current_revision, r.compacted_revision, r.pruned_revision, r.applied_index
            ));
            out.line(format!(
                "{} records, {} live keys, {} leases holding {} keys",
                r.records, r.live_keys, r.leases, r.leased_keys
            ));
            let entries: u64 = r.verified.entries.iter().map(|(_, n)| n).sum();
            let sst_bytes: u64 = r.verified.sst_files.iter().map(|(_, _, b)| b).sum();
            out.line(format!(
                "checksums verified: {entries} entries in {} column families, {} SST files ({sst_bytes} bytes)",
                r.verified.entries.len(),
                r.verified.sst_files.len()
            ));
            for h in std::iter::once(&r.hash).chain(at.as_ref()) {
                out.line(format!(
                    "hash {} (hash revision {}, compact revision {})",
                    h.hash, h.revision, h.compact_revision
                ));
            }
        }
        Format::Json => out.json(&CheckJson::new(&report, at.as_ref()))?,
    }
    Ok(())
}
