//! `batchkv serve` against a real etcd 3.4, over etcd's gRPC API (issue 13's benchmark):
//! `cargo xtask bench server`.
//!
//! One closed-loop load generator, on the Rust `etcd-client` crate, drives both servers in the
//! same run: both on loopback on this machine, both fsyncing before they answer (etcd always
//! does; `batchkv serve` opens its store with the default `Durability::Sync`), over the same key
//! space (16-byte keys, 100-byte values). Workloads: puts, point gets, 1,000-key prefix ranges
//! (preloaded), and a compare-and-swap txn (`mod_revision == last seen` then put, else get), at
//! 1, 16, 64 and 256 clients (tasks on a tokio runtime) sharing up to 16 gRPC connections. The
//! two servers take turns point by point (the first one alternating), so drift hits both.
//!
//! Per point: throughput, p50/p99 (an HDR histogram per client, merged), and the CPU seconds
//! (user + system, from /proc/<pid>/stat) of the server process and of the load generator (this
//! process) over the measured window. Rows go to `server.csv`; `server.md` has the table, the
//! ratios batchkv/etcd and the aims of issue 13, reported as met or not, never asserted.
//!
//! The `batchkv` binary is `$BATCHKV_BIN` (xtask sets it), else the one beside this bench's
//! directory (`target/release/batchkv`, which `cargo build --workspace --release` makes).
//!
//! `BATCHKV_BENCH_ETCD_MEMBERS=3` runs both as 3-member clusters on loopback instead (etcd's
//! and batchkv's own bootstrap flags; connections spread over the members, so followers
//! forward writes and serve linearizable gets through ReadIndex; CPU summed over the members):
//! issue 14's comparison. `BATCHKV_BENCH_BATCHKV_CLUSTER=1` serves batchkv as a raft cluster
//! even with one member (a 1-member cluster against the single node: run it with and without,
//! etcd being the reference both times). `BATCHKV_BENCH_CLIENTS=64,256` replaces the client
//! counts (of the quick run too); the filter may name several workloads (`put,get`).
//!
//! With more than one member, `server/failover` (issue 14) measures leader failover on both
//! clusters: under a light write load (two writers per member, a put every 10 ms each, 500 ms
//! per request), the leader (the member whose Maintenance Status names itself) is SIGKILLed;
//! the figure is the time from the kill to the acknowledgement of the first put sent after it,
//! by any member. Then the member is restarted and the cluster settles. Three rounds per
//! system (one in the quick run), reported as min / median / max in `server.md`. Both run
//! their defaults: 100 ms heartbeats and a 1,000 ms election timeout (etcd's
//! `--heartbeat-interval` and `--election-timeout`; batchkv's `NodeConfig::new`: a 100 ms tick,
//! 10 ticks to an election, a heartbeat every tick; both randomize the election timeout
//! between one and two times it).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batchkv_benches::rows::ServerRow;
use batchkv_testkit::{BatchkvCluster, BatchkvServer, Etcd, Rng};
use etcd_client::{Client, Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};
use hdrhistogram::Histogram;
use tokio::time::Instant;

mod common;

const WORKLOADS: [&str; 4] = ["put", "get", "range", "txn"];
/// Connections per server; a point with fewer clients uses one per client.
const CONNECTIONS: usize = 16;
/// Keys of the put workload (drawn at random).
const PUT_KEYS: u64 = 100_000;
/// Preloaded keys of the point-get workload.
const GET_KEYS: u64 = 10_000;
/// Preloaded prefixes of the range workload, 1,000 keys each.
const RANGE_PREFIXES: u64 = 4;
const RANGE_KEYS: u64 = 1_000;
/// Keys each txn client cycles through.
const TXN_KEYS_PER_CLIENT: u64 = 16;
const VALUE_BYTES: usize = 100;

/// A server under test: its name in the rows, its processes (one per member), its
/// connections.
struct Target {
    name: &'static str,
    pids: Vec<u32>,
    conns: Vec<Client>,
}

/// The settings of one run.
struct Plan {
    clients: Vec<usize>,
    warm_up: Duration,
    measure: Duration,
}

fn main() {
    let filter = common::filter();
    let workloads: Vec<&str> = WORKLOADS
        .into_iter()
        .filter(|w| {
            filter.as_deref().is_none_or(|f| {
                f.split(',')
                    .any(|f| format!("server/{w}").contains(f.trim()))
            })
        })
        .collect();
    let members = etcd_members();
    let failover = members > 1
        && filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|f| "server/failover".contains(f.trim())));
    if workloads.is_empty() && !failover {
        return;
    }
    let mut plan = if common::quick() {
        Plan {
            clients: vec![1, 16],
            warm_up: Duration::from_millis(250),
            measure: Duration::from_secs(1),
        }
    } else {
        Plan {
            clients: vec![1, 16, 64, 256],
            warm_up: Duration::from_secs(1),
            measure: Duration::from_secs(5),
        }
    };
    if let Some(clients) = env_clients() {
        plan.clients = clients;
    }
    let binary = batchkv_binary();
    // One member: the single-node server (no raft), unless asked for a 1-member cluster; more:
    // a batchkv cluster of as many members as etcd's, bootstrapped with etcd's flags.
    let as_cluster = std::env::var("BATCHKV_BENCH_BATCHKV_CLUSTER").is_ok_and(|v| v == "1");
    let mut batchkv = if members > 1 || as_cluster {
        Served::Cluster(BatchkvCluster::start(&binary, members, &[]))
    } else {
        Served::One(BatchkvServer::start(&binary))
    };
    let etcd = Etcd::start_cluster(members);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = runtime.block_on(async {
        let mut targets = [
            Target::connect("batchkv", &batchkv.endpoints(), batchkv.pids()).await,
            Target::connect(
                "etcd",
                &etcd.endpoints(),
                (0..members).map(|i| etcd.pid(i)).collect(),
            )
            .await,
        ];
        for t in &targets {
            preload(t).await;
        }
        let mut rows = Vec::new();
        let mut point = 0usize;
        for w in &workloads {
            for &clients in &plan.clients {
                // The servers take turns going first.
                if point % 2 == 1 {
                    targets.reverse();
                }
                for t in &targets {
                    let row = run_point(t, w, clients, point, &plan).await;
                    println!(
                        "server/{w}/{clients}: {:<7} {:>9.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  \
                         server cpu {:.2} s  client cpu {:.2} s  errors {}",
                        row.server,
                        row.ops_per_s,
                        row.p50_us,
                        row.p99_us,
                        row.server_cpu_s,
                        row.client_cpu_s,
                        row.errors
                    );
                    rows.push(row);
                }
                if point % 2 == 1 {
                    targets.reverse();
                }
                point += 1;
            }
        }
        rows
    });
    let mut md = if workloads.is_empty() {
        String::new()
    } else {
        section(&rows, &plan, &binary, members)
    };
    let mut etcd = etcd;
    if failover {
        let rounds = if common::quick() { 1 } else { 3 };
        let Served::Cluster(cluster) = &mut batchkv else {
            unreachable!("more than one member is a cluster")
        };
        let endpoints = cluster.endpoints();
        let b = failovers(&runtime, rounds, &endpoints, |i, kill| {
            if kill {
                cluster.member_mut(i).kill();
            } else {
                cluster.member_mut(i).restart();
            }
        });
        let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| e.to_string()).collect();
        let e = failovers(&runtime, rounds, &endpoints, |i, kill| {
            if kill {
                etcd.kill(i);
            } else {
                etcd.restart(i);
            }
        });
        md.push_str(&failover_section(&b, &e, members));
    }
    drop(etcd);
    drop(runtime);
    print!("{md}");
    common::write_report("server.md", &md);
    common::write_rows(&rows);
    drop(batchkv);
}

/// The batchkv side: one server, or a cluster.
enum Served {
    One(BatchkvServer),
    Cluster(BatchkvCluster),
}

impl Served {
    fn endpoints(&self) -> Vec<String> {
        match self {
            Served::One(s) => vec![s.endpoint()],
            Served::Cluster(c) => c.endpoints(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Served::One(s) => vec![s.pid().expect("running")],
            Served::Cluster(c) => (0..c.len())
                .map(|i| c.member(i).pid().expect("running"))
                .collect(),
        }
    }
}

/// `$BATCHKV_BENCH_ETCD_MEMBERS` (1 when unset): etcd's members (and batchkv's).
fn etcd_members() -> usize {
    match std::env::var("BATCHKV_BENCH_ETCD_MEMBERS") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("BATCHKV_BENCH_ETCD_MEMBERS={v:?} is not a member count")),
        Err(_) => 1,
    }
}

/// `$BATCHKV_BENCH_CLIENTS` (comma-separated client counts), if set.
fn env_clients() -> Option<Vec<usize>> {
    let v = std::env::var("BATCHKV_BENCH_CLIENTS").ok()?;
    let counts: Vec<usize> = v
        .split(',')
        .map(|c| c.trim().parse().ok().filter(|n| *n > 0))
        .collect::<Option<_>>()
        .unwrap_or_else(|| panic!("BATCHKV_BENCH_CLIENTS={v:?} is not a list of client counts"));
    Some(counts)
}

/// `$BATCHKV_BIN`, else `batchkv` in the directory above this executable's (`target/release`).
fn batchkv_binary() -> PathBuf {
    let path = std::env::var_os("BATCHKV_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(
                exe.parent()?
                    .parent()?
                    .join(format!("batchkv{}", std::env::consts::EXE_SUFFIX)),
            )
        })
        .expect("the bench's own path");
    assert!(
        path.is_file(),
        "no batchkv binary at {}: run `cargo build --workspace --release` first, or set \
         BATCHKV_BIN (`cargo xtask bench server` does both)",
        path.display()
    );
    path
}

impl Target {
    /// `CONNECTIONS` connections, spread round-robin over `endpoints`.
    async fn connect<E: AsRef<str>>(name: &'static str, endpoints: &[E], pids: Vec<u32>) -> Target {
        let mut conns = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            let endpoint = endpoints[i % endpoints.len()].as_ref();
            let c = Client::connect([endpoint], None)
                .await
                .unwrap_or_else(|e| panic!("connect to {name} at {endpoint}: {e}"));
            conns.push(c);
        }
        Target { name, pids, conns }
    }

    fn kv(&self, i: usize) -> KvClient {
        self.conns[i % self.conns.len()].kv_client()
    }
}

fn put_key(i: u64) -> String {
    format!("p/{i:014x}")
}

fn get_key(i: u64) -> String {
    format!("g/{i:014x}")
}

fn range_prefix(p: u64) -> String {
    format!("r/{p:02}/")
}

fn range_key(p: u64, i: u64) -> String {
    format!("{}{i:011x}", range_prefix(p))
}

/// A txn client's `j`th key at point `point` (fresh keys per point, so every CAS starts from
/// an absent key, whose mod revision is 0).
fn txn_key(point: usize, client: usize, j: u64) -> String {
    format!("c/{point:02x}{client:03x}{j:09x}")
}

fn value(rng: &mut Rng) -> Vec<u8> {
    rng.bytes(VALUE_BYTES)
}

/// The keys of the get and range workloads, 100 puts per txn (etcd's limit is 128 ops).
async fn preload(t: &Target) {
    let mut rng = Rng(0x5e57_0000);
    let mut keys: Vec<String> = (0..GET_KEYS).map(get_key).collect();
    for p in 0..RANGE_PREFIXES {
        keys.extend((0..RANGE_KEYS).map(|i| range_key(p, i)));
    }
    let mut kv = t.kv(0);
    for chunk in keys.chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|k| TxnOp::put(k.as_str(), value(&mut rng), None))
            .collect();
        kv.txn(Txn::new().and_then(ops))
            .await
            .unwrap_or_else(|e| panic!("preload {}: {e}", t.name));
    }
}

/// What one client measured.
struct Tally {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
}

/// One point: `clients` closed-loop clients on `target` for the warm-up and the measured window.
async fn run_point(
    target: &Target,
    workload: &str,
    clients: usize,
    point: usize,
    plan: &Plan,
) -> ServerRow {
    let connections = clients.min(CONNECTIONS);
    let start = Instant::now();
    let from = start + plan.warm_up;
    let until = from + plan.measure;
    let workload: Arc<str> = Arc::from(workload);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let kv = target.kv(c % connections);
            let workload = Arc::clone(&workload);
            tokio::spawn(client(kv, workload, c, point, from, until))
        })
        .collect();
    tokio::time::sleep_until(from).await;
    let server_cpu = || target.pids.iter().map(|&p| cpu_secs(p)).sum::<f64>();
    let (server0, self0) = (server_cpu(), cpu_secs(std::process::id()));
    tokio::time::sleep_until(until).await;
    let (server1, self1) = (server_cpu(), cpu_secs(std::process::id()));
    let mut hist = new_hist();
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        let tally = t.await.expect("client task");
        hist.add(&tally.hist).expect("same histogram bounds");
        ops += tally.ops;
        errors += tally.errors;
    }
    let secs = plan.measure.as_secs_f64();
    ServerRow {
        server: target.name.to_owned(),
        workload: workload.to_string(),
        clients,
        connections,
        ops,
        errors,
        secs,
        ops_per_s: ops as f64 / secs,
        p50_us: hist.value_at_quantile(0.50) as f64,
        p99_us: hist.value_at_quantile(0.99) as f64,
        server_cpu_s: server1 - server0,
        client_cpu_s: self1 - self0,
    }
}

fn new_hist() -> Histogram<u64> {
    // µs, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// One closed-loop client: a request, its answer, the next; the requests that start in the
/// measured window and end before its end are counted.
async fn client(
    mut kv: KvClient,
    workload: Arc<str>,
    id: usize,
    point: usize,
    from: Instant,
    until: Instant,
) -> Tally {
    let mut rng = Rng(0xc11e_0000 ^ ((point as u64) << 20) ^ id as u64);
    let mut tally = Tally {
        hist: new_hist(),
        ops: 0,
        errors: 0,
    };
    let mut revs = [0i64; TXN_KEYS_PER_CLIENT as usize];
    let mut j = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= until {
            break;
        }
        let ok = match &*workload {
            "put" => {
                let k = put_key(rng.next() % PUT_KEYS);
                kv.put(k, value(&mut rng), None).await.is_ok()
            }
            "get" => {
                let k = get_key(rng.next() % GET_KEYS);
                kv.get(k, None).await.is_ok_and(|r| r.kvs().len() == 1)
            }
            "range" => {
                let p = range_prefix(rng.next() % RANGE_PREFIXES);
                kv.get(p, Some(GetOptions::new().with_prefix()))
                    .await
                    .is_ok_and(|r| r.kvs().len() == RANGE_KEYS as usize)
            }
            "txn" => {
                let slot = (j % TXN_KEYS_PER_CLIENT) as usize;
                let k = txn_key(point, id, j % TXN_KEYS_PER_CLIENT);
                j += 1;
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        k.as_str(),
                        CompareOp::Equal,
                        revs[slot],
                    )])
                    .and_then([TxnOp::put(k.as_str(), value(&mut rng), None)])
                    .or_else([TxnOp::get(k.as_str(), None)]);
                match kv.txn(txn).await {
                    Ok(r) if r.succeeded() => {
                        revs[slot] = r.header().map_or(0, |h| h.revision());
                        true
                    }
                    Ok(r) => {
                        // Someone else's write (none here): take its revision and go on.
                        if let Some(TxnOpResponse::Get(g)) = r.op_responses().first() {
                            revs[slot] = g.kvs().first().map_or(0, |kv| kv.mod_revision());
                        }
                        true
                    }
                    Err(_) => false,
                }
            }
            other => unreachable!("unknown workload {other}"),
        };
        let t1 = Instant::now();
        if t0 >= from && t1 <= until {
            if ok {
                let us = (t1 - t0).as_micros().try_into().unwrap_or(u64::MAX);
                tally.hist.saturating_record(us.max(1));
                tally.ops += 1;
            } else {
                tally.errors += 1;
            }
        }
    }
    tally
}

/// User + system CPU seconds of process `pid` so far (/proc/<pid>/stat, fields 14 and 15).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|x| x.parse().expect("a tick count"))
        .collect();
    (f[0] + f[1]) as f64 / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn find<'a>(rows: &'a [ServerRow], server: &str, w: &str, clients: usize) -> Option<&'a ServerRow> {
    rows.iter()
        .find(|r| r.server == server && r.workload == w && r.clients == clients)
}

/// The report section: every point side by side, the ratios, the aims.
fn section(rows: &[ServerRow], plan: &Plan, binary: &std::path::Path, members: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## batchkv serve vs etcd 3.4 over gRPC (`benches/benches/server.rs`)\n"
    );
    let _ = writeln!(
        md,
        "Command: `cargo xtask bench server`. One closed-loop load generator (Rust `etcd-client` \
         0.21, tasks on one tokio runtime) against `{}` and etcd 3.4, each {}, both on \
         loopback on this machine, both fsyncing before they answer (batchkv's default \
         `Durability::Sync`; etcd's WAL). 16-byte keys, 100-byte values; put: random keys of \
         {PUT_KEYS}; get: {GET_KEYS} preloaded keys; range: a prefix of {RANGE_KEYS} preloaded \
         keys (one of {RANGE_PREFIXES}); txn: compare-and-swap (mod revision equal to the last \
         seen, then put, else get). Clients share min(clients, {CONNECTIONS}) connections. \
         {:.2} s warm-up, then {:.1} s measured per point; the servers take turns. CPU: user + \
         system seconds in the measured window, from /proc, and the server's per answered request \
         (b: batchkv, e: etcd). `x` is batchkv's throughput over etcd's, `p99 x` etcd's p99 over \
         batchkv's: > 1 means batchkv does better.\n",
        binary.display(),
        if members == 1 {
            "a single member (batchkv: no raft)".to_owned()
        } else {
            format!(
                "a {members}-member cluster (connections spread over the members, so followers \
                 forward writes and serve linearizable gets through ReadIndex; CPU summed over \
                 the members)"
            )
        },
        plan.warm_up.as_secs_f64(),
        plan.measure.as_secs_f64(),
    );
    let _ = writeln!(
        md,
        "| workload | clients | batchkv ops/s | etcd ops/s | x | p50 µs b / e | p99 µs b / e | \
         p99 x | server CPU s b / e | server CPU µs/op b / e | client CPU s b / e | errors b / e |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let per_op = |r: &ServerRow| {
        if r.ops == 0 {
            f64::NAN
        } else {
            r.server_cpu_s * 1e6 / r.ops as f64
        }
    };
    for w in WORKLOADS {
        for &c in &plan.clients {
            let (Some(b), Some(e)) = (find(rows, "batchkv", w, c), find(rows, "etcd", w, c)) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {w} | {c} | {:.0} | {:.0} | **{:.2}** | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} | \
                 {:.2} / {:.2} | {:.1} / {:.1} | {:.2} / {:.2} | {} / {} |",
                b.ops_per_s,
                e.ops_per_s,
                b.ops_per_s / e.ops_per_s,
                b.p50_us,
                e.p50_us,
                b.p99_us,
                e.p99_us,
                e.p99_us / b.p99_us,
                b.server_cpu_s,
                e.server_cpu_s,
                per_op(b),
                per_op(e),
                b.client_cpu_s,
                e.client_cpu_s,
                b.errors,
                e.errors,
            );
        }
    }
    let _ = writeln!(md, "\nAims of issue 13 (reported, not asserted):\n");
    let _ = writeln!(md, "| aim | measured | met |\n|---|---|---|");
    let mut aims = 0;
    for (w, want) in [("put", 3.0), ("txn", 3.0), ("get", 5.0), ("range", 5.0)] {
        for c in [64, 256] {
            let (Some(b), Some(e)) = (find(rows, "batchkv", w, c), find(rows, "etcd", w, c)) else {
                continue;
            };
            aims += 1;
            let x = b.ops_per_s / e.ops_per_s;
            let lower = b.p99_us < e.p99_us;
            let _ = writeln!(
                md,
                "| {w} at {c} clients: ≥ {want}x etcd's throughput, lower p99 | {x:.2}x, p99 \
                 {:.0} vs {:.0} µs | {} |",
                b.p99_us,
                e.p99_us,
                met(x >= want && lower)
            );
        }
    }
    for w in WORKLOADS {
        let (Some(b), Some(e)) = (find(rows, "batchkv", w, 1), find(rows, "etcd", w, 1)) else {
            continue;
        };
        aims += 1;
        let _ = writeln!(
            md,
            "| {w} at 1 client: p50 at or below etcd's | {:.0} vs {:.0} µs | {} |",
            b.p50_us,
            e.p50_us,
            met(b.p50_us <= e.p50_us)
        );
    }
    if aims == 0 {
        let _ = writeln!(md, "| (no point of the aims in this run) | - | - |");
    }
    md.push('\n');
    md
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "**not met**" }
}

/// Writers per member in the failover load, the pause between a writer's puts, and how long
/// one put may take.
const FAILOVER_WRITERS: usize = 2;
const FAILOVER_PAUSE: Duration = Duration::from_millis(10);
const FAILOVER_PUT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a round waits for a write after the kill.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// `rounds` leader failovers of the cluster at `endpoints`: `member(i, true)` SIGKILLs member
/// `i`, `member(i, false)` restarts it (and waits until it is healthy). Each round's time from
/// the kill to the first acknowledged write sent after it (`None`: none within the limit).
fn failovers(
    runtime: &tokio::runtime::Runtime,
    rounds: usize,
    endpoints: &[String],
    mut member: impl FnMut(usize, bool),
) -> Vec<Option<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let leader = runtime.block_on(find_leader(endpoints));
        let t = runtime.block_on(failover_once(endpoints, round, || member(leader, true)));
        println!(
            "server/failover: round {round}: leader {leader} killed; first write after {}",
            t.map_or("none".to_owned(), |t| format!("{} ms", t.as_millis()))
        );
        times.push(t);
        member(leader, false);
    }
    // The cluster settled (a leader again) before anything else runs on it.
    runtime.block_on(find_leader(endpoints));
    times
}

/// The index of the member whose Maintenance Status names itself leader (members that do not
/// answer are skipped); polled for up to 60 s.
async fn find_leader(endpoints: &[String]) -> usize {
    let deadline = Instant::now() + FAILOVER_LIMIT;
    let ask = Duration::from_millis(500);
    loop {
        for (i, e) in endpoints.iter().enumerate() {
            let Ok(Ok(mut c)) =
                tokio::time::timeout(ask, Client::connect([e.as_str()], None)).await
            else {
                continue;
            };
            let Ok(Ok(s)) = tokio::time::timeout(ask, c.status()).await else {
                continue;
            };
            if s.header().is_some_and(|h| h.member_id() == s.leader()) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader among {endpoints:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One failover: the light write load on every member, `kill` once it runs, then the time
/// from the kill to the first put sent after it that a member acknowledged.
async fn failover_once(
    endpoints: &[String],
    round: usize,
    kill: impl FnOnce(),
) -> Option<Duration> {
    let killed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (m, e) in endpoints.iter().enumerate() {
        for w in 0..FAILOVER_WRITERS {
            let client = Client::connect([e.as_str()], None)
                .await
                .unwrap_or_else(|err| panic!("connect to {e}: {err}"));
            let (killed, first, stop) =
                (Arc::clone(&killed), Arc::clone(&first), Arc::clone(&stop));
            writers.push(tokio::spawn(async move {
                let mut kv = client.kv_client();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("f/{round}/{m}/{w}/{n}");
                    n += 1;
                    let sent = Instant::now();
                    let put = tokio::time::timeout(FAILOVER_PUT_TIMEOUT, kv.put(key, "v", None));
                    let acked = matches!(put.await, Ok(Ok(_)));
                    let at = Instant::now();
                    let after_kill = killed.lock().expect("lock").is_some_and(|k| sent >= k);
                    if acked && after_kill {
                        let mut f = first.lock().expect("lock");
                        if f.is_none_or(|f| at < f) {
                            *f = Some(at);
                        }
                    }
                    if !acked {
                        // A refused connection answers at once: do not spin on it.
                        tokio::time::sleep(FAILOVER_PAUSE).await;
                    }
                    tokio::time::sleep(FAILOVER_PAUSE).await;
                }
            }));
        }
    }
    // The load runs a moment before the kill.
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill();
    let at = Instant::now();
    *killed.lock().expect("lock") = Some(at);
    let deadline = at + FAILOVER_LIMIT;
    let outcome = loop {
        if let Some(f) = *first.lock().expect("lock") {
            break Some(f - at);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    outcome
}

/// The failover section of the report.
fn failover_section(b: &[Option<Duration>], e: &[Option<Duration>], members: usize) -> String {
    let stats = |ts: &[Option<Duration>]| {
        let ms: Vec<f64> = ts.iter().flatten().map(|t| t.as_secs_f64() * 1e3).collect();
        let min = ms.iter().copied().fold(f64::NAN, f64::min);
        let max = ms.iter().copied().fold(f64::NAN, f64::max);
        let failed = ts.len() - ms.len();
        format!(
            "{min:.0} / {:.0} / {max:.0} | {} | {failed}",
            common::median(&ms),
            ms.iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Leader failover, {members}-member clusters (`server/failover`)\n\n\
         Under a light write load ({FAILOVER_WRITERS} writers per member, a put every \
         {} ms each, {} ms per request), the leader (found through Maintenance Status) is \
         SIGKILLed; the time is from the kill to the acknowledgement of the first put sent after \
         it, by any member; the member is restarted before the next round. Both with their \
         defaults: 100 ms heartbeats, a 1,000 ms election timeout (randomized up to twice \
         that).\n\n\
         | server | ms min / median / max | rounds (ms) | no write within {} s |\n|---|---|---|---:|\n\
         | batchkv | {} |\n| etcd | {} |\n",
        FAILOVER_PAUSE.as_millis(),
        FAILOVER_PUT_TIMEOUT.as_millis(),
        FAILOVER_LIMIT.as_secs(),
        stats(b),
        stats(e),
    );
    md
}
