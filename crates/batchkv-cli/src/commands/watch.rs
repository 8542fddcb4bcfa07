//! `watch`: replays the events from `--rev` up to the current revision, then exits. While the
//! command runs nothing else can write (the data dir is open in this process only), so there
//! is nothing to wait for after that.

use std::time::{Duration, Instant};

use batchkv::{Store, WatchEvent, WatchRequest};

use crate::args::WatchArgs;
use crate::commands::Ctx;
use crate::error::{CliError, CliResult, exit};
use crate::output::{Format, Out, WatchJson};
use crate::request::key_range;

/// Revisions per watch response, as etcd's catch-up (`watchBatchMaxRevs`).
const WATCH_BATCH_REVS: usize = 1000;

/// How long a replay may go without an answer before it is called stalled.
const STALL: Duration = Duration::from_secs(30);

/// `watch KEY [RANGE_END] --rev=N`.
pub fn watch(ctx: &Ctx, a: &WatchArgs, out: &mut Out) -> CliResult {
    if a.interactive {
        return Err(CliError::new(
            exit::BAD_FEATURE,
            "batchkv watch has no interactive mode",
        ));
    }
    if a.exec.is_some() {
        return Err(CliError::new(
            exit::BAD_FEATURE,
            "batchkv watch does not run commands (`-- COMMAND`)",
        ));
    }
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CliError::bad_args("bad number of arguments"));
    }
    if a.args.len() == 2 && a.prefix {
        return Err(CliError::bad_args(
            "`range_end` and `--prefix` are mutually exclusive",
        ));
    }
    let (key, range_end) = key_range(&a.args, a.prefix, false)?;
    if a.rev <= 0 {
        return Err(CliError::bad_args(
            "batchkv watch needs --rev=N (N > 0): it replays the events from revision N up to \
             the current revision and exits",
        ));
    }
    let mut req = WatchRequest::range(key, range_end).from_revision(a.rev);
    req.prev_kv = a.prev_kv;
    let replayed = ctx.with_store(|s| replay(s, req))?;
    let (events, current) = match replayed {
        Replay::Canceled { compacted } => {
            if ctx.format == Format::Json {
                out.json(&WatchJson::canceled(compacted))?;
            }
            out.err_line(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
            );
            return Err(CliError::new(
                exit::INTERRUPTED,
                "watch is canceled by the server",
            ));
        }
        Replay::Events { events, current } => (events, current),
    };
    for chunk in catch_up_chunks(&events) {
        match ctx.format {
            Format::Simple => chunk.iter().for_each(|e| out.event(e)),
            Format::Json => out.json(&WatchJson::events(current, chunk))?,
        }
    }
    Ok(())
}

/// etcd's catch-up: the events of up to 1,000 revisions per response.
fn catch_up_chunks(events: &[WatchEvent]) -> Vec<&[WatchEvent]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut revs = 0;
    for i in 0..events.len() {
        if i == 0 || events[i].kv.mod_revision != events[i - 1].kv.mod_revision {
            if revs == WATCH_BATCH_REVS {
                chunks.push(&events[start..i]);
                start = i;
                revs = 0;
            }
            revs += 1;
        }
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    chunks
}

/// What a replay found.
enum Replay {
    /// The events up to `current`, the revision when the replay started.
    Events {
        events: Vec<WatchEvent>,
        current: i64,
    },
    /// The watch was cancelled because that history is compacted (up to `compacted`).
    Canceled { compacted: i64 },
}

/// The events from the request's revision up to the current one.
fn replay(s: &Store, req: WatchRequest) -> CliResult<Replay> {
    let current = s.current_revision();
    let mut w = s.watch(req);
    let mut events = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        // `try_recv` catches up from storage; it answers `None` once the watcher is synced.
        let next = match w.try_recv() {
            Ok(Some(r)) => Some(r),
            Ok(None) if w.next_revision() > current => break,
            Ok(None) => w
                .recv_timeout(Duration::from_millis(50))
                .map_err(|e| CliError::new(exit::ERROR, e.to_string()))?,
            Err(e) => return Err(CliError::new(exit::ERROR, e.to_string())),
        };
        match next {
            Some(resp) => {
                idle_since = Instant::now();
                if resp.canceled {
                    return Ok(Replay::Canceled {
                        compacted: resp.compact_revision,
                    });
                }
                events.extend(resp.events);
            }
            None if idle_since.elapsed() > STALL => {
                return Err(CliError::new(
                    exit::ERROR,
                    format!(
                        "watch replay stalled at revision {} (current {current})",
                        w.next_revision()
                    ),
                ));
            }
            None => {}
        }
    }
    Ok(Replay::Events { events, current })
}

#[cfg(test)]
mod tests {
    use batchkv::{EventKind, KeyValue};

    use super::*;

    #[test]
    fn chunks_hold_up_to_1000_revisions() {
        let ev = |rev: i64| WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                mod_revision: rev,
                ..KeyValue::default()
            },
            prev_kv: None,
        };
        // Two events per revision for the first 1,000 revisions, then one more revision.
        let mut events: Vec<WatchEvent> = (1..=1000).flat_map(|r| [ev(r), ev(r)]).collect();
        events.push(ev(1001));
        let chunks = catch_up_chunks(&events);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [2000, 1]
        );
        assert!(catch_up_chunks(&[]).is_empty());
    }
}
