//! batchkv's own commands: `stats` and `checkpoint`.

use std::path::PathBuf;

use crate::args::CheckpointArgs;
use crate::commands::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{CheckpointJson, Format, Out, StatsJson};

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
