//! The recorded client history and its linearizability check.
//!
//! Every client operation is one [`Record`]: who ran it, on which key, what it asked, when it
//! was invoked and when its answer came back (client-side times from one monotonic clock), and
//! the [`Outcome`]: an answer, a definite failure (it did not happen), or ambiguous (a timeout, a
//! broken connection: it may or may not have happened, now or later).
//!
//! The check is stateright's [`LinearizabilityTester`] over [`KeySpec`], one key at a time
//! (linearizability is compositional: a history is linearizable iff each key's sub-history is).
//! How the history is fed to it:
//!
//! - a definite failure is dropped (it had no effect);
//! - a read without an answer (failed or ambiguous) is dropped (a read has no effect);
//! - an ambiguous write is an operation invoked and never returned, in a thread of its own: the
//!   tester may place it anywhere after its invocation (honouring the real-time order of what
//!   returned before it was invoked) or leave it out;
//! - every other operation is invoked and returned in its client's thread, in time order (at
//!   equal times invocations first: the less ordered reading).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

/// A value written. The fault run makes every written value unique.
pub type Value = u64;

/// A read of something no writer wrote (not a number): [`Value`]s never take it.
pub const FOREIGN: Value = u64::MAX;

/// What a client asked, on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Put the value.
    Put(Value),
    /// Read the key (a linearizable get).
    Get,
    /// Delete the key.
    Delete,
    /// A txn: if the key holds `expect` (`None`: the key is absent), put `new`.
    Cas {
        /// The value compared (`None`: version 0).
        expect: Option<Value>,
        /// The value put when the compare holds.
        new: Value,
    },
}

impl Op {
    /// Whether it may change the key (everything but a get).
    pub fn is_write(self) -> bool {
        !matches!(self, Op::Get)
    }
}

/// What an operation answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// A put succeeded.
    Put,
    /// A get read this value (`None`: no key).
    Get(Option<Value>),
    /// A delete removed the key (`true`) or found none (`false`).
    Delete(bool),
    /// A txn's compare held and it put (`true`) or did not (`false`).
    Cas(bool),
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It answered.
    Ok(Ret),
    /// A definite error: it did not happen.
    Fail,
    /// A timeout or a broken connection: it may or may not have happened.
    Ambiguous,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The client (each runs one operation at a time).
    pub client: usize,
    /// The key.
    pub key: String,
    /// What it asked.
    pub op: Op,
    /// When it was invoked (nanoseconds since the run began).
    pub invoked: u64,
    /// When it returned, or when the client gave up on it.
    pub returned: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The revision etcd's answer carried (its response header), if it answered.
    pub revision: Option<i64>,
}

/// The sequential spec of one key: its value, or none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySpec(pub Option<Value>);

impl SequentialSpec for KeySpec {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Put(v) => {
                self.0 = Some(v);
                Ret::Put
            }
            Op::Get => Ret::Get(self.0),
            Op::Delete => Ret::Delete(self.0.take().is_some()),
            Op::Cas { expect, new } => {
                let swapped = self.0 == expect;
                if swapped {
                    self.0 = Some(new);
                }
                Ret::Cas(swapped)
            }
        }
    }
}

/// Where the records of a run go: shared by every client, with the run's clock.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    records: Mutex<Vec<Record>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            records: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the recorder was made (monotonic).
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time since the recorder was made.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds one record.
    pub fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A tester's thread: a client's answered operations, or one ambiguous write (after all
/// clients, so the search tries answered operations first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Thread {
    Client(usize),
    Ambiguous(usize),
}

/// A key whose history is not linearizable (or not a well-formed history).
#[derive(Clone, Debug)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Why: not linearizable, or what made the history malformed.
    pub reason: String,
    /// Its records, as checked (dropped ones left out), in invocation order.
    pub records: Vec<Record>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?}: {} ({} operations):",
            self.key,
            self.reason,
            self.records.len()
        )?;
        for r in &self.records {
            writeln!(
                f,
                "  client {:>3} [{:>12} .. {:>12}] {:?} -> {:?} (revision {:?})",
                r.client, r.invoked, r.returned, r.op, r.outcome, r.revision
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// What [`check`] looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys checked.
    pub keys: usize,
    /// Operations fed to the tester (answered ones and ambiguous writes).
    pub checked: usize,
    /// Ambiguous writes among them.
    pub ambiguous_writes: usize,
    /// Records dropped (definite failures, reads without an answer).
    pub dropped: usize,
    /// The most operations one key had.
    pub max_per_key: usize,
}

/// Whether the record takes part in the check.
fn kept(r: &Record) -> bool {
    match r.outcome {
        Outcome::Ok(_) => true,
        Outcome::Fail => false,
        Outcome::Ambiguous => r.op.is_write(),
    }
}

/// Checks that `records` are linearizable, key by key.
///
/// # Errors
/// The first key (in key order) whose history is not linearizable, with its records.
pub fn check(records: &[Record]) -> Result<CheckStats, Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    let mut stats = CheckStats::default();
    for r in records {
        if kept(r) {
            by_key.entry(&r.key).or_default().push(r);
        } else {
            stats.dropped += 1;
        }
    }
    for (key, mut recs) in by_key {
        recs.sort_by_key(|r| (r.invoked, r.client));
        stats.keys += 1;
        stats.checked += recs.len();
        stats.max_per_key = stats.max_per_key.max(recs.len());
        stats.ambiguous_writes += recs
            .iter()
            .filter(|r| r.outcome == Outcome::Ambiguous)
            .count();
        check_key(&recs).map_err(|reason| Violation {
            key: key.to_owned(),
            reason,
            records: recs.iter().map(|r| (*r).clone()).collect(),
        })?;
    }
    Ok(stats)
}

/// One key's records (all kept), in invocation order.
fn check_key(recs: &[&Record]) -> Result<(), String> {
    // (time, 0 = invoke | 1 = return, index): invocations before returns at equal times.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * recs.len());
    for (i, r) in recs.iter().enumerate() {
        events.push((r.invoked, 0, i));
        if let Outcome::Ok(_) = r.outcome {
            if r.returned < r.invoked {
                return Err(format!(
                    "an operation returned before it was invoked: {r:?}"
                ));
            }
            events.push((r.returned, 1, i));
        }
    }
    events.sort_unstable();
    let mut tester = LinearizabilityTester::new(KeySpec::default());
    for (_, kind, i) in events {
        let r = recs[i];
        let thread = match r.outcome {
            Outcome::Ambiguous => Thread::Ambiguous(i),
            _ => Thread::Client(r.client),
        };
        let fed = if kind == 0 {
            tester.on_invoke(thread, r.op).map(|_| ())
        } else {
            let Outcome::Ok(ret) = r.outcome else {
                unreachable!("only answered operations return")
            };
            tester.on_return(thread, ret).map(|_| ())
        };
        fed.map_err(|e| format!("not a well-formed history: {e}"))?;
    }
    if tester.serialized_history().is_some() {
        Ok(())
    } else {
        Err("not linearizable".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answered operation on key "k".
    fn ok(client: usize, invoked: u64, returned: u64, op: Op, ret: Ret) -> Record {
        Record {
            client,
            key: "k".to_owned(),
            op,
            invoked,
            returned,
            outcome: Outcome::Ok(ret),
            revision: None,
        }
    }

    fn put(client: usize, t: (u64, u64), v: Value) -> Record {
        ok(client, t.0, t.1, Op::Put(v), Ret::Put)
    }

    fn get(client: usize, t: (u64, u64), v: Option<Value>) -> Record {
        ok(client, t.0, t.1, Op::Get, Ret::Get(v))
    }

    fn ambiguous(client: usize, invoked: u64, op: Op) -> Record {
        Record {
            outcome: Outcome::Ambiguous,
            ..ok(client, invoked, invoked + 1_000, op, Ret::Put)
        }
    }

    fn linearizable(records: &[Record]) -> bool {
        check(records).is_ok()
    }

    #[test]
    fn sequential_and_overlapping_histories_pass() {
        assert!(linearizable(&[
            get(0, (0, 1), None),
            put(0, (2, 3), 1),
            get(1, (4, 5), Some(1)),
            ok(1, 6, 7, Op::Delete, Ret::Delete(true)),
            get(0, (8, 9), None),
            ok(0, 10, 11, Op::Delete, Ret::Delete(false)),
        ]));
        // A read overlapping a write may see either value, and two overlapping reads may see
        // the old and the new value in either real-time arrangement that fits one order.
        assert!(linearizable(&[
            put(0, (0, 1), 1),
            put(1, (10, 50), 2),
            get(2, (20, 30), Some(1)),
            get(3, (25, 40), Some(2)),
            get(2, (60, 70), Some(2)),
        ]));
        // An empty history, and keys are independent.
        assert!(linearizable(&[]));
        let mut other = put(5, (0, 1), 7);
        other.key = "other".to_owned();
        assert!(linearizable(&[other, get(0, (2, 3), None)]));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_rejected() {
        let history = [
            put(0, (0, 10), 1),
            put(0, (20, 30), 2),
            get(1, (40, 50), Some(1)),
        ];
        let err = check(&history).expect_err("a stale read");
        assert_eq!(err.key, "k");
        assert_eq!(err.reason, "not linearizable");
        assert_eq!(err.records.len(), 3);
        assert!(err.to_string().contains("Get"), "{err}");
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected() {
        assert!(!linearizable(&[
            put(0, (0, 10), 1),
            get(1, (20, 30), Some(99)),
        ]));
        assert!(!linearizable(&[get(1, (0, 1), Some(FOREIGN))]));
    }

    #[test]
    fn reads_seeing_two_writes_in_opposite_orders_are_rejected() {
        // Both writes span the reads, so each read alone may see either, but client 2 sees 1
        // then 2 and client 3 sees 2 then 1 at the same times: no single order fits.
        assert!(!linearizable(&[
            put(0, (0, 100), 1),
            put(1, (0, 100), 2),
            get(2, (10, 20), Some(1)),
            get(3, (10, 20), Some(2)),
            get(2, (30, 40), Some(2)),
            get(3, (30, 40), Some(1)),
        ]));
    }

    #[test]
    fn an_ambiguous_write_may_take_effect_or_not() {
        // Seen: it happened (after its invocation).
        assert!(linearizable(&[
            put(0, (0, 10), 1),
            ambiguous(1, 20, Op::Put(2)),
            get(2, (30, 40), Some(1)),
            get(2, (50, 60), Some(2)),
        ]));
        // Never seen: it did not happen.
        assert!(linearizable(&[
            put(0, (0, 10), 1),
            ambiguous(1, 20, Op::Put(2)),
            get(2, (30, 40), Some(1)),
            get(2, (50, 60), Some(1)),
        ]));
        // Its client goes on after giving up on it, and it may land after the client's later
        // operations (a timed-out request still in flight).
        assert!(linearizable(&[
            ambiguous(0, 0, Op::Put(2)),
            put(0, (2_000, 2_010), 3),
            get(1, (2_020, 2_030), Some(3)),
            get(1, (2_040, 2_050), Some(2)),
        ]));
        // An ambiguous delete and compare-and-swap too.
        assert!(linearizable(&[
            put(0, (0, 10), 1),
            ambiguous(1, 20, Op::Delete),
            ambiguous(
                2,
                20,
                Op::Cas {
                    expect: None,
                    new: 5
                }
            ),
            get(3, (30, 40), Some(5)),
        ]));
    }

    #[test]
    fn an_ambiguous_write_is_not_seen_before_it_was_invoked_nor_undone() {
        assert!(!linearizable(&[
            get(0, (0, 10), Some(2)),
            ambiguous(1, 20, Op::Put(2)),
        ]));
        // Once seen, it stays (until a later write): it happens once.
        assert!(!linearizable(&[
            put(0, (0, 10), 1),
            ambiguous(1, 20, Op::Put(2)),
            get(2, (30, 40), Some(2)),
            get(2, (50, 60), Some(1)),
        ]));
    }

    #[test]
    fn failures_and_unanswered_reads_are_left_out() {
        let failed = Record {
            outcome: Outcome::Fail,
            ..put(0, (0, 10), 7)
        };
        // A definite failure did not happen: reading its value is a violation.
        assert!(!linearizable(&[failed.clone(), get(1, (20, 30), Some(7))]));
        assert!(linearizable(&[failed.clone(), get(1, (20, 30), None)]));
        let lost_read = ambiguous(1, 0, Op::Get);
        let stats = check(&[failed, lost_read, get(1, (20, 30), None)]).expect("linearizable");
        assert_eq!(stats.dropped, 2);
        assert_eq!(stats.checked, 1);
        assert_eq!(stats.keys, 1);
    }

    #[test]
    fn compare_and_swap_and_delete_answers_are_checked() {
        let cas = |client, t: (u64, u64), expect, new, swapped| {
            ok(client, t.0, t.1, Op::Cas { expect, new }, Ret::Cas(swapped))
        };
        assert!(linearizable(&[
            cas(0, (0, 10), None, 1, true),
            cas(1, (20, 30), None, 2, false),
            cas(1, (40, 50), Some(1), 2, true),
            get(0, (60, 70), Some(2)),
        ]));
        // Two sequential creates cannot both succeed.
        assert!(!linearizable(&[
            cas(0, (0, 10), None, 1, true),
            cas(1, (20, 30), None, 2, true),
        ]));
        // A delete that found the key after a delete that removed it, nothing in between.
        assert!(!linearizable(&[
            put(0, (0, 10), 1),
            ok(1, 20, 30, Op::Delete, Ret::Delete(true)),
            ok(2, 40, 50, Op::Delete, Ret::Delete(true)),
        ]));
    }

    #[test]
    fn overlapping_operations_of_one_client_are_a_malformed_history() {
        let err = check(&[put(0, (0, 100), 1), get(0, (50, 60), Some(1))])
            .expect_err("one client, two operations at once");
        assert!(err.reason.contains("well-formed"), "{}", err.reason);
    }
}
