//! The fault run: clients load the cluster while its leader is killed and restarted; then the
//! checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use batchkv_testkit::Rng;
use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, Txn, TxnOp, WatchOptions};

use crate::cluster::{Cluster, connect, endpoints, leader};
use crate::history::{self, CheckStats, FOREIGN, Op, Outcome, Record, Recorder, Ret, Value};

/// The prefix of every key the run writes.
pub const PREFIX: &str = "faults/";

/// How a fault run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Leader kills (each followed by a restart).
    pub rounds: usize,
    /// `etcd-client` clients, each with its own connection (spread over the members).
    pub clients: usize,
    /// Keys in use at a time.
    pub keys: usize,
    /// How long a key set is in use before the next one: keeps each key's history short for
    /// the checker.
    pub key_epoch: Duration,
    /// Load before the first kill and after each restart.
    pub up: Duration,
    /// How long the killed leader stays down.
    pub down: Duration,
    /// A request's deadline: past it, its outcome is ambiguous.
    pub op_timeout: Duration,
    /// Also run etcdctl puts and gets (one more client) during the load.
    pub etcdctl: bool,
    /// The seed of the clients' choices.
    pub seed: u64,
}

impl Default for Config {
    /// The short setting the tests run: two kills, a few seconds.
    fn default() -> Self {
        Config {
            rounds: 2,
            clients: 6,
            keys: 6,
            key_epoch: Duration::from_secs(1),
            up: Duration::from_millis(1500),
            down: Duration::from_millis(1500),
            op_timeout: Duration::from_secs(2),
            etcdctl: true,
            seed: 1,
        }
    }
}

/// What a fault run did and found (every check passed when it is returned).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations recorded.
    pub ops: usize,
    /// Answered.
    pub ok: usize,
    /// Definite failures.
    pub failed: usize,
    /// Ambiguous (timed out, connection lost).
    pub ambiguous: usize,
    /// Ambiguous writes whose effect is in the revision history.
    pub ambiguous_applied: usize,
    /// Operations run through etcdctl.
    pub etcdctl_ops: usize,
    /// The members killed, in order.
    pub killed: Vec<usize>,
    /// The last revision.
    pub revision: i64,
    /// Every member's HashKV at that revision (equal).
    pub hash: u32,
    /// How long the load ran.
    pub load_time: Duration,
    /// How long the linearizability check took.
    pub check_time: Duration,
    /// What it looked at.
    pub check: CheckStats,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} leader kills (members {:?}) over {:.1} s of load",
            self.killed.len(),
            self.killed,
            self.load_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "{} operations ({} through etcdctl): {} answered, {} failed, {} ambiguous ({} of the ambiguous writes took effect)",
            self.ops,
            self.etcdctl_ops,
            self.ok,
            self.failed,
            self.ambiguous,
            self.ambiguous_applied
        )?;
        writeln!(
            f,
            "revisions 2..={} contiguous; every member's HashKV at {} is {:#010x}",
            self.revision, self.revision, self.hash
        )?;
        write!(
            f,
            "linearizable: {} keys, {} operations checked ({} ambiguous writes, at most {} on one key) in {:.2} s",
            self.check.keys,
            self.check.checked,
            self.check.ambiguous_writes,
            self.check.max_per_key,
            self.check_time.as_secs_f64()
        )
    }
}

/// What the clients share.
struct Shared {
    recorder: Recorder,
    endpoints: RwLock<Vec<String>>,
    stop: AtomicBool,
    /// The next value to write (unique in the run).
    next_value: AtomicU64,
    config: Config,
}

impl Shared {
    fn endpoint(&self, i: usize) -> String {
        let eps = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        eps[i % eps.len()].clone()
    }

    /// A key of the current key set.
    fn key(&self, rng: &mut Rng) -> String {
        let epoch = self.recorder.elapsed().as_millis() / self.config.key_epoch.as_millis().max(1);
        let k = rng.below(self.config.keys.max(1));
        format!("{PREFIX}e{epoch}/k{k}")
    }

    fn value(&self) -> Value {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }
}

/// Runs the load with `config.rounds` leader kills on `cluster`, then every check.
///
/// # Errors
/// A failed check (the message says which and shows the evidence), or a cluster that stops
/// answering.
pub fn run(cluster: &mut impl Cluster, config: &Config) -> Result<Report> {
    ensure!(cluster.member_count() > 0, "a cluster without members");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("build the tokio runtime")?;
    let shared = Arc::new(Shared {
        recorder: Recorder::new(),
        endpoints: RwLock::new(endpoints(cluster)),
        stop: AtomicBool::new(false),
        next_value: AtomicU64::new(1),
        config: config.clone(),
    });
    let mut tasks = Vec::new();
    for id in 0..config.clients {
        tasks.push(rt.spawn(client_loop(id, Arc::clone(&shared))));
    }
    if config.etcdctl {
        tasks.push(rt.spawn(etcdctl_loop(config.clients, Arc::clone(&shared))));
    }
    let started = Instant::now();
    let mut killed = Vec::new();
    let faults = fault_rounds(cluster, config, &rt, &shared, &mut killed);
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t).context("a client task panicked")?;
    }
    faults?;
    let load_time = started.elapsed();
    let records = shared.recorder.records();
    let mut report = Report {
        ops: records.len(),
        etcdctl_ops: records
            .iter()
            .filter(|r| r.client == config.clients)
            .count(),
        killed,
        load_time,
        ..Report::default()
    };
    for r in &records {
        match r.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Fail => report.failed += 1,
            Outcome::Ambiguous => report.ambiguous += 1,
        }
    }
    ensure!(report.ok > 0, "no operation was answered");
    let eps = endpoints(cluster);
    rt.block_on(check_cluster(&eps, &records, &mut report))?;
    let checked = Instant::now();
    let stats = check_in_big_stack(records)?;
    report.check_time = checked.elapsed();
    report.check = stats;
    Ok(report)
}

/// The rounds: load, find the leader, SIGKILL it, wait, restart it; then load once more.
fn fault_rounds(
    cluster: &mut impl Cluster,
    config: &Config,
    rt: &tokio::runtime::Runtime,
    shared: &Shared,
    killed: &mut Vec<usize>,
) -> Result<()> {
    for _ in 0..config.rounds {
        std::thread::sleep(config.up);
        let eps = endpoints(cluster);
        let l = rt.block_on(leader(&eps, Duration::from_secs(30)))?;
        cluster.kill(l);
        killed.push(l);
        std::thread::sleep(config.down);
        cluster.restart(l);
        *shared.endpoints.write().unwrap_or_else(|e| e.into_inner()) = endpoints(cluster);
    }
    std::thread::sleep(config.up);
    Ok(())
}

/// stateright's search recurses once per operation of a key: a thread with room for it.
fn check_in_big_stack(records: Vec<Record>) -> Result<CheckStats> {
    let checker = std::thread::Builder::new()
        .name("linearizability".to_owned())
        .stack_size(512 << 20)
        .spawn(move || history::check(&records))
        .context("spawn the checker thread")?;
    match checker.join() {
        Ok(Ok(stats)) => Ok(stats),
        Ok(Err(violation)) => bail!("the history is not linearizable: {violation}"),
        Err(_) => bail!("the linearizability checker panicked"),
    }
}

/// How an error of a request that may have changed something is classified: a rejection
/// etcd gives before it proposes anything is definite; anything else (a timeout, a lost
/// connection, "leader changed") may or may not have been applied.
fn write_error(e: &etcd_client::Error) -> Outcome {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::GRpcStatus(s)
            if matches!(
                s.code(),
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::ResourceExhausted
            ) =>
        {
            Outcome::Fail
        }
        E::InvalidArgs(_) | E::InvalidUri(_) => Outcome::Fail,
        _ => Outcome::Ambiguous,
    }
}

fn parse_value(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|v| *v != FOREIGN)
        .unwrap_or(FOREIGN)
}

/// One request; `Err` is the outcome of a failed one.
async fn request(client: &mut Client, key: &str, op: Op) -> Result<(Ret, i64), etcd_client::Error> {
    let rev = |h: Option<&etcd_client::ResponseHeader>| h.map_or(0, |h| h.revision());
    Ok(match op {
        Op::Put(v) => {
            let r = client.put(key, v.to_string(), None).await?;
            (Ret::Put, rev(r.header()))
        }
        Op::Get => {
            let r = client.get(key, None).await?;
            let v = r.kvs().first().map(|kv| parse_value(kv.value()));
            (Ret::Get(v), rev(r.header()))
        }
        Op::Delete => {
            let r = client.delete(key, None).await?;
            (Ret::Delete(r.deleted() > 0), rev(r.header()))
        }
        Op::Cas { expect, new } => {
            let compare = match expect {
                Some(v) => Compare::value(key, CompareOp::Equal, v.to_string()),
                None => Compare::version(key, CompareOp::Equal, 0),
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key, new.to_string(), None)]);
            let r = client.txn(txn).await?;
            (Ret::Cas(r.succeeded()), rev(r.header()))
        }
    })
}

/// One `etcd-client` client: one request at a time on its own connection, to one member;
/// after a request without an answer it moves to the next member and probes with a get.
async fn client_loop(id: usize, shared: Arc<Shared>) {
    let config = &shared.config;
    let mut rng = Rng(batchkv_testkit::mix64(config.seed ^ (id as u64 + 1)));
    let mut member = id;
    let mut client = None;
    // What this client last saw on each key: the compare of its next compare-and-swap.
    let mut seen: HashMap<String, Option<Value>> = HashMap::new();
    let mut probe = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match connect(&shared.endpoint(member), config.op_timeout).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    member += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let key = shared.key(&mut rng);
        let op = if probe {
            Op::Get
        } else {
            match rng.below(100) {
                0..40 => Op::Put(shared.value()),
                40..75 => Op::Get,
                75..85 => Op::Delete,
                _ => Op::Cas {
                    expect: seen.get(&key).copied().flatten(),
                    new: shared.value(),
                },
            }
        };
        let invoked = shared.recorder.now();
        let answer = tokio::time::timeout(config.op_timeout, request(c, &key, op)).await;
        let returned = shared.recorder.now();
        let (outcome, revision) = match answer {
            Ok(Ok((ret, rev))) => {
                match ret {
                    Ret::Get(v) => {
                        seen.insert(key.clone(), v);
                    }
                    Ret::Put | Ret::Cas(true) => {
                        if let Op::Put(v) | Op::Cas { new: v, .. } = op {
                            seen.insert(key.clone(), Some(v));
                        }
                    }
                    Ret::Delete(_) => {
                        seen.insert(key.clone(), None);
                    }
                    Ret::Cas(false) => {}
                }
                (Outcome::Ok(ret), Some(rev))
            }
            Ok(Err(e)) => (write_error(&e), None),
            Err(_) => (Outcome::Ambiguous, None),
        };
        probe = !matches!(outcome, Outcome::Ok(_));
        shared.recorder.push(Record {
            client: id,
            key,
            op,
            invoked,
            returned,
            outcome,
            revision,
        });
        if probe {
            // A lost connection or a member that is down: the next member, after a pause.
            member += 1;
            client = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The etcdctl client: a put or a get through `etcdctl -w json` every ~100 ms, aimed at every
/// member (etcdctl picks one and fails over).
async fn etcdctl_loop(id: usize, shared: Arc<Shared>) {
    let mut rng = Rng(batchkv_testkit::mix64(shared.config.seed ^ 0xe7cd));
    while !shared.stop.load(Ordering::Relaxed) {
        let key = shared.key(&mut rng);
        let op = if rng.below(2) == 0 {
            Op::Put(shared.value())
        } else {
            Op::Get
        };
        let eps = shared
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .join(",");
        let timeout = shared.config.op_timeout;
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").args([
            format!("--endpoints={eps}"),
            "-w".to_owned(),
            "json".to_owned(),
            "--dial-timeout=1s".to_owned(),
            format!("--command-timeout={}ms", timeout.as_millis()),
        ]);
        match op {
            Op::Put(v) => cmd.args(["put".to_owned(), key.clone(), v.to_string()]),
            _ => cmd.args(["get".to_owned(), key.clone()]),
        };
        let invoked = shared.recorder.now();
        let out = tokio::task::spawn_blocking(move || batchkv_testkit::run_ctl(cmd, None)).await;
        let returned = shared.recorder.now();
        let answer = out
            .ok()
            .filter(|o| o.ok)
            .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok());
        let (outcome, revision) = match (answer, op) {
            (Some(json), Op::Put(_)) => {
                (Outcome::Ok(Ret::Put), json["header"]["revision"].as_i64())
            }
            (Some(json), _) => {
                let value = json["kvs"][0]["value"].as_str().map(|b64| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_or(FOREIGN, |bytes| parse_value(&bytes))
                });
                (
                    Outcome::Ok(Ret::Get(value)),
                    json["header"]["revision"].as_i64(),
                )
            }
            // etcdctl's exit code does not say whether a put was applied.
            (None, _) => (Outcome::Ambiguous, None),
        };
        shared.recorder.push(Record {
            client: id,
            key,
            op,
            invoked,
            returned,
            outcome,
            revision,
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries `f` until it succeeds or `wait` passes.
async fn retry<T, F, Fut>(what: &str, wait: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if started.elapsed() > wait => {
                return Err(e.context(format!("{what} (for {wait:?})")));
            }
            Err(_) if started.elapsed() > wait => bail!("{what}: no answer for {wait:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One event of the revision history.
#[derive(Clone, Debug)]
struct Event {
    revision: i64,
    key: String,
    /// `None`: a delete.
    value: Option<Value>,
}

/// The checks on the cluster itself once the load stopped: every member's HashKV at the last
/// revision, the revision history (a watch from revision 1) contiguous and holding every
/// acknowledged write, and every member's keys equal to that history's end.
async fn check_cluster(
    endpoints: &[String],
    records: &[Record],
    report: &mut Report,
) -> Result<()> {
    let wait = Duration::from_secs(60);
    let first = &endpoints[0];
    let revision = || {
        retry("the last revision", wait, || async {
            let mut c = connect(first, Duration::from_secs(5)).await?;
            let r = c.get(PREFIX, None).await?;
            Ok(r.header().map_or(0, |h| h.revision()))
        })
    };
    // A request the clients gave up on may still be applied (a proposal in the log of a
    // restarted member): the last revision is the one that stays for a second.
    let mut head = revision().await?;
    let settled = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = revision().await?;
        if now == head {
            break;
        }
        ensure!(
            settled.elapsed() < wait,
            "the revision kept moving without clients for {wait:?} (at {now})"
        );
        head = now;
    }
    ensure!(
        head > 1,
        "the cluster is at revision {head}: nothing was written"
    );
    report.revision = head;

    // HashKV at `head` on every member (retried until the member has applied it).
    let mut hashes = Vec::new();
    for e in endpoints {
        let hash = retry(&format!("HashKV({head}) of {e}"), wait, || async {
            let mut c = connect(e, Duration::from_secs(5)).await?;
            let r = c.hash_kv(head).await?;
            Ok((r.hash(), r.compact_version()))
        })
        .await?;
        hashes.push(hash);
    }
    ensure!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members' HashKV (hash, compact revision) at revision {head} differ: {hashes:?} for {endpoints:?}"
    );
    report.hash = hashes[0].0;

    // The revision history: a watch of every key from revision 1 up to `head`.
    let events = retry("the watch history", wait, || async {
        let mut c = connect(first, Duration::from_secs(5)).await?;
        let mut stream = c
            .watch(
                "",
                Some(WatchOptions::new().with_all_keys().with_start_revision(1)),
            )
            .await?;
        let mut events = Vec::new();
        let mut last = 0;
        while last < head {
            let Some(resp) = stream.message().await? else {
                bail!("the watch ended at revision {last} of {head}");
            };
            ensure!(
                !resp.canceled(),
                "the watch was canceled: {}",
                resp.cancel_reason()
            );
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                last = last.max(kv.mod_revision());
                events.push(Event {
                    revision: kv.mod_revision(),
                    key: String::from_utf8_lossy(kv.key()).into_owned(),
                    value: match ev.event_type() {
                        EventType::Put => Some(parse_value(kv.value())),
                        EventType::Delete => None,
                    },
                });
            }
        }
        Ok(events)
    })
    .await?;
    check_events(head, &events, records, report)?;

    // Every member's keys (a serializable read of its own copy) are where the history ends.
    let mut last: BTreeMap<&str, Option<Value>> = BTreeMap::new();
    for ev in &events {
        last.insert(&ev.key, ev.value);
    }
    let expected: BTreeMap<String, Value> = last
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    for e in endpoints {
        let got = retry(&format!("the keys of {e}"), wait, || async {
            let mut c = connect(e, Duration::from_secs(5)).await?;
            let r = c
                .get(
                    PREFIX,
                    Some(GetOptions::new().with_prefix().with_serializable()),
                )
                .await?;
            let at = r.header().map_or(0, |h| h.revision());
            ensure!(at >= head, "{e} is at revision {at}, not yet {head}");
            ensure!(
                at == head,
                "{e} moved past revision {head} to {at} after the load"
            );
            Ok(r.kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        parse_value(kv.value()),
                    )
                })
                .collect::<BTreeMap<_, _>>())
        })
        .await?;
        ensure!(
            got == expected,
            "member {e}'s keys differ from the end of the revision history: {} keys, {} expected",
            got.len(),
            expected.len()
        );
    }
    Ok(())
}

/// The revision history against the recorded writes.
fn check_events(
    head: i64,
    events: &[Event],
    records: &[Record],
    report: &mut Report,
) -> Result<()> {
    let revisions: BTreeSet<i64> = events.iter().map(|e| e.revision).collect();
    let want: BTreeSet<i64> = (2..=head).collect();
    if revisions != want {
        let missing: Vec<_> = want.difference(&revisions).take(10).collect();
        let extra: Vec<_> = revisions.difference(&want).take(10).collect();
        bail!("revisions are not 2..={head}: missing {missing:?}, unexpected {extra:?}");
    }
    ensure!(
        events.windows(2).all(|w| w[0].revision <= w[1].revision),
        "the watch delivered revisions out of order"
    );
    // Each value is written once: a write applied twice (a retried request) would show twice.
    let mut written: HashMap<Value, &Event> = HashMap::new();
    for ev in events {
        let Some(v) = ev.value else { continue };
        ensure!(
            v != FOREIGN,
            "the history holds a value no client wrote: {ev:?}"
        );
        if let Some(prev) = written.insert(v, ev) {
            bail!("value {v} was written twice: {prev:?} and {ev:?}");
        }
    }
    let at: HashMap<(i64, &str), &Event> = events
        .iter()
        .map(|e| ((e.revision, e.key.as_str()), e))
        .collect();
    for r in records {
        match (r.op, r.outcome) {
            // An acknowledged write is in the history at the revision its answer carried.
            (Op::Put(v) | Op::Cas { new: v, .. }, Outcome::Ok(Ret::Put | Ret::Cas(true))) => {
                let rev = r.revision.context("an answer without a revision")?;
                let ev = at.get(&(rev, r.key.as_str()));
                ensure!(
                    ev.is_some_and(|e| e.value == Some(v)),
                    "acknowledged write of {v} to {} at revision {rev} is not in the history (found {ev:?}): {r:?}",
                    r.key
                );
            }
            (Op::Delete, Outcome::Ok(Ret::Delete(true))) => {
                let rev = r.revision.context("an answer without a revision")?;
                let ev = at.get(&(rev, r.key.as_str()));
                ensure!(
                    ev.is_some_and(|e| e.value.is_none()),
                    "acknowledged delete of {} at revision {rev} is not in the history (found {ev:?})",
                    r.key
                );
            }
            (Op::Put(v) | Op::Cas { new: v, .. }, Outcome::Ambiguous)
                if written.contains_key(&v) =>
            {
                report.ambiguous_applied += 1;
            }
            // An answered write that was not acknowledged has nothing to check; a write that
            // failed definitely must have left no trace.
            (Op::Put(v) | Op::Cas { new: v, .. }, Outcome::Fail) => {
                ensure!(
                    !written.contains_key(&v),
                    "write of {v} failed definitely but is in the history: {r:?}"
                );
            }
            _ => {}
        }
    }
    Ok(())
}
