//! `batchkv serve`: etcd's v3 gRPC API on a data dir (crates/batchkv-server), with etcd's flag
//! names. It runs until SIGTERM or SIGINT, then stops gracefully: no new connections or
//! requests, the watch and keep-alive streams end, the requests in flight are answered (for at
//! most [`DRAIN_TIMEOUT`]), and the store is closed, so every acknowledged write is on disk.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use batchkv::{AutoCompaction, Store};
use batchkv_server::{Server, ServerConfig};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::DEFAULT_DATA_DIR;

/// How long a stopping server waits for the requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves etcd's v3 gRPC API (KV, Watch, Lease, Maintenance, Cluster) on a batchkv data dir,
/// for etcdctl and etcd's client libraries. Flags are etcd's.
#[derive(Debug, Parser)]
#[command(name = "batchkv serve")]
pub struct ServeArgs {
    /// The store (created if missing)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    name: String,
    /// URLs to listen on for client traffic (comma-separated; all http, or all https with
    /// --cert-file and --key-file)
    #[arg(long, value_name = "URLS", default_value = "http://127.0.0.1:2379")]
    listen_client_urls: String,
    /// Path to the client server TLS cert file (PEM)
    #[arg(long, value_name = "PATH")]
    cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file: clients must present a
    /// certificate signed by it
    #[arg(long, value_name = "PATH")]
    trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication (needs --trusted-ca-file)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    client_cert_auth: bool,
    /// Client URLs to advertise (MemberList); default: the listen URLs
    #[arg(long, value_name = "URLS")]
    advertise_client_urls: Option<String>,
    /// Maximum client request size in bytes the server will accept
    #[arg(long, value_name = "BYTES", default_value_t = batchkv::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// Backend size quota in bytes: past it the NOSPACE alarm refuses writes until disarmed
    /// (0: etcd's default, 2 GiB; negative: no quota)
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    quota_backend_bytes: i64,
    /// Maximum concurrent gRPC streams each client connection can open (etcd's default is
    /// unbounded; batchkv's is 4096)
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_concurrent_streams: u32,
    /// How long a connection may be idle before the server pings it (0: never)
    #[arg(long, value_name = "DURATION", default_value = "2h")]
    grpc_keepalive_interval: String,
    /// How long to wait for the answer to a ping before closing the connection (0: tonic's
    /// default, 20s)
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    grpc_keepalive_timeout: String,
    /// Serve etcd's HTTP/JSON gateway (POST /v3/kv/range, ...) on the client port
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    enable_grpc_gateway: bool,
    /// URLs to serve /metrics and /health on (comma-separated, http only)
    #[arg(long, value_name = "URLS")]
    listen_metrics_urls: Option<String>,
    /// Log level: debug, info, warn, error, panic or fatal (RUST_LOG overrides)
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Auto-compaction mode: periodic or revision
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// Auto-compaction retention: for periodic a duration (5m, 1h30m; a bare number is
    /// hours), for revision a number of revisions; 0 turns auto-compaction off
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// Initial cluster configuration for bootstrapping (name=peer-url,...); without it the
    /// store is a single node with no raft
    #[arg(long, value_name = "NAME=URL,...")]
    initial_cluster: Option<String>,
    /// Initial cluster state: new (every member of --initial-cluster starts empty) or
    /// existing (join a running cluster after `etcdctl member add`, or restart a member
    /// from its data dir)
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    initial_cluster_state: String,
    /// Initial cluster token, so clusters bootstrapped with the same members differ (their
    /// member and cluster ids)
    #[arg(long, default_value = batchkv_server::membership::DEFAULT_CLUSTER_TOKEN)]
    initial_cluster_token: String,
    /// This member's peer URLs to advertise to the rest of the cluster (as in
    /// --initial-cluster)
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// URL to listen on for peer traffic (raft messages; http)
    #[arg(long, value_name = "URLS", default_value = "http://localhost:2380")]
    listen_peer_urls: String,
    /// Number of committed raft entries that trigger a snapshot of the store and the
    /// compaction of the raft log (0: the default, 10000)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SNAPSHOT_COUNT)]
    snapshot_count: u64,
    /// Raft entries kept below a snapshot, so a slightly slow follower catches up from the
    /// log rather than by snapshot (0: the default, 5000)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SNAPSHOT_CATCHUP_ENTRIES)]
    experimental_snapshot_catchup_entries: u64,
    /// Memory for batchkv's value cache: each live key's latest value kept beside its index,
    /// so reads of the latest state skip storage (not an etcd flag; 0: no cache)
    #[arg(long, value_name = "BYTES", default_value_t = batchkv::DEFAULT_VALUE_CACHE_BYTES)]
    experimental_value_cache_bytes: usize,
}

/// `--snapshot-count`'s default (etcd 3.6's; etcd 3.4's is 100,000).
const DEFAULT_SNAPSHOT_COUNT: u64 = 10_000;
/// `--experimental-snapshot-catchup-entries`'s default (etcd's `SnapshotCatchUpEntries`).
const DEFAULT_SNAPSHOT_CATCHUP_ENTRIES: u64 = 5_000;

/// Runs `batchkv serve ARGS` (the arguments after `serve`); returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv = std::iter::once(OsString::from("batchkv serve")).chain(args);
    let args = match ServeArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    let level = match args.log_level.as_str() {
        "panic" | "fatal" => "error",
        l => l,
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn run(args: ServeArgs) -> Result<(), String> {
    let (listen, https) = parse_urls(&args.listen_client_urls, "--listen-client-urls")?;
    let tls = tls_config(&args, https)?;
    let metrics = match &args.listen_metrics_urls {
        Some(urls) => match parse_urls(urls, "--listen-metrics-urls")? {
            (_, true) => {
                return Err(format!(
                    "--listen-metrics-urls: {urls}: https is not served (http only)"
                ));
            }
            (addrs, false) => addrs,
        },
        None => Vec::new(),
    };
    let compaction = auto_compaction(&args.auto_compaction_mode, &args.auto_compaction_retention)?;
    let keepalive_interval = keepalive(&args.grpc_keepalive_interval, "--grpc-keepalive-interval")?;
    let keepalive_timeout = keepalive(&args.grpc_keepalive_timeout, "--grpc-keepalive-timeout")?;
    let max_request = args.max_request_bytes;
    let mut cluster = cluster_config(&args)?;
    // A few workers: the store's own threads do the work (group commit, RocksDB); the
    // runtime only moves requests and answers (and, replicated, the peer traffic).
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(256)
        .thread_name("batchkv-server")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    if let Some(c) = &mut cluster {
        identify(c, &args, &runtime)?;
    }
    let value_cache = args.experimental_value_cache_bytes;
    let mut builder = Store::builder(&args.data_dir)
        .metrics(!metrics.is_empty())
        .mvcc(move |c| {
            c.max_request_bytes(max_request)
                .value_cache_bytes(value_cache)
        });
    if let Some(mode) = compaction {
        builder = builder.auto_compaction(mode);
    }
    let mut removal = None;
    if let Some(c) = &cluster {
        let (b, slot) = replicated(
            builder,
            &args.data_dir,
            c,
            snapshot_settings(&args),
            runtime.handle(),
        )?;
        builder = b;
        removal = Some(slot);
    }
    let store = builder
        .open()
        .map_err(|e| format!("cannot open {}: {e}", args.data_dir.display()))?;
    // The peers refusing this member's traffic as a removed member's stop it.
    if let (Some(slot), Some(notice)) = (&removal, store.raft_removal_notice()) {
        let _ = slot.set(notice);
    }
    let _metrics: Vec<_> = metrics
        .iter()
        .map(|a| {
            store
                .serve_metrics(&a.to_string())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let config = ServerConfig {
        listen,
        name: args.name.clone(),
        advertise_client_urls: args
            .advertise_client_urls
            .map(|u| u.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        max_request_bytes: args.max_request_bytes,
        max_concurrent_streams: args.max_concurrent_streams,
        keepalive_interval,
        keepalive_timeout,
        grpc_gateway: args.enable_grpc_gateway,
        quota_backend_bytes: if args.quota_backend_bytes == 0 {
            ServerConfig::default().quota_backend_bytes
        } else {
            args.quota_backend_bytes
        },
        snapshot_dir: args
            .data_dir
            .canonicalize()
            .ok()
            .and_then(|d| d.parent().map(PathBuf::from)),
        tls,
        cluster: cluster.as_ref().map(|c| c.members.clone()),
        cluster_token: args.initial_cluster_token.clone(),
        ..ServerConfig::default()
    };
    let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
    // The peer service outlives the client one: the writes drained at close still need the
    // other members' acknowledgements.
    let (peer_stop, peer_stopping) = tokio::sync::watch::channel(false);
    let served = runtime.block_on(async {
        let server = Server::bind(store.clone(), config.clone())
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen_client_urls))?;
        if let Some(c) = &cluster {
            let client_urls = if config.advertise_client_urls.is_empty() {
                let scheme = if config.tls.is_some() { "https" } else { "http" };
                server
                    .local_addrs()
                    .iter()
                    .map(|a| format!("{scheme}://{a}"))
                    .collect()
            } else {
                config.advertise_client_urls.clone()
            };
            serve_peers(&store, c, &args.name, &client_urls, peer_stopping).await?;
        }
        tracing::info!(addrs = ?server.local_addrs(), data_dir = %args.data_dir.display(), "ready to serve client requests");
        let watched = store.clone();
        let serving = server.serve(async move {
            let name = tokio::select! {
                name = shutdown_signal() => name,
                () = removed(&watched) => "removed from the cluster",
            };
            tracing::info!(signal = name, "stopping");
            let _ = signalled_tx.send(true);
        });
        tokio::select! {
            r = serving => r.map_err(|e| format!("serving failed: {e}")),
            () = async {
                let _ = signalled.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still in flight; closing anyway");
                Ok(())
            }
        }
    });
    if cluster.is_some() {
        hand_off_leadership(&store);
    }
    // Every queued write is answered and durable before the process exits.
    let closed = store.close().map_err(|e| format!("closing the store: {e}"));
    let _ = peer_stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    closed?;
    tracing::info!("stopped; the store is closed");
    Ok(())
}

/// How long a stopping leader waits for its leadership to move (raft gives a transfer up after
/// an election timeout, 1 s).
const HAND_OFF_TIMEOUT: Duration = Duration::from_millis(1500);

/// A stopping leader hands its leadership to the voter most up to date first (etcd's
/// `TransferLeadership` on stop), so the others elect no one and writes move on at once instead
/// of after an election timeout. Best effort: a transfer that does not start or finish in time
/// leaves the cluster to elect a leader as after a crash.
fn hand_off_leadership(store: &Store) {
    let Some(status) = store.raft_status() else {
        return;
    };
    if !status.is_leader || status.removed {
        return;
    }
    let to = match store.hand_off_leadership() {
        Ok(Some(to)) => to,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "leadership transfer not started");
            return;
        }
    };
    tracing::info!(
        to = format_args!("{to:x}"),
        "stopping leader: transferring leadership"
    );
    let deadline = std::time::Instant::now() + HAND_OFF_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match store.raft_status() {
            Some(s) if s.leader == Some(to) => {
                tracing::info!(
                    to = format_args!("{to:x}"),
                    term = s.term,
                    "leadership transferred"
                );
                return;
            }
            None => return,
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    tracing::warn!(to = format_args!("{to:x}"), timeout = ?HAND_OFF_TIMEOUT, "leadership transfer did not finish; stopping anyway");
}

/// A member of a cluster: etcd's bootstrap flags, checked.
struct ClusterFlags {
    members: batchkv_server::membership::InitialCluster,
    listen_peer: SocketAddr,
    /// `--initial-cluster-state existing` on an empty data dir: join a running cluster.
    join: bool,
    /// Joining: what the running cluster said (`Peer.Members`).
    joined: Option<Joined>,
}

/// What a member joining a running cluster learned from it.
struct Joined {
    /// The cluster's initial voters and every member's record: the joiner bootstraps raft
    /// with them and replays the log from its start, as every member did.
    initial_voters: Vec<u64>,
    initial_records: Vec<(u64, Vec<u8>)>,
    /// Every current member but this one, with its first peer URL.
    peers: Vec<(u64, String)>,
}

/// Where a member keeps its own id and its cluster's (etcd keeps them in its WAL's
/// metadata): a member that joined a running cluster cannot compute them from its flags.
const MEMBER_FILE: &str = "batchkv-member.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct MemberFile {
    id: u64,
    cluster_id: u64,
}

/// Completes when this member applied its own removal from the cluster (etcd's server stops
/// then: "the member has been permanently removed from the cluster").
async fn removed(store: &Store) {
    loop {
        if store.raft_status().is_some_and(|s| s.removed) {
            tracing::warn!("the member has been permanently removed from the cluster");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// This member's id and its cluster's: from [`MEMBER_FILE`] if it was started before;
/// joining, from the running cluster (`Peer.Members`, asked of the other members of
/// `--initial-cluster`: the member whose peer URLs are this one's advertised URLs, as etcd's
/// `ValidateClusterAndAssignIDs`); otherwise from the flags. Written to [`MEMBER_FILE`].
fn identify(
    c: &mut ClusterFlags,
    args: &ServeArgs,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let file = args.data_dir.join(MEMBER_FILE);
    if let Ok(bytes) = std::fs::read(&file) {
        let saved: MemberFile =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        c.members.local_id = saved.id;
        c.members.cluster_id = saved.cluster_id;
        return Ok(());
    }
    if c.join {
        let mut advertised = advertised_peer_urls(args);
        advertised.sort();
        let urls: Vec<String> = c
            .members
            .members
            .iter()
            .filter(|m| {
                let mut u = m.peer_urls.clone();
                u.sort();
                u != advertised
            })
            .flat_map(|m| m.peer_urls.clone())
            .collect();
        let answer = runtime.block_on(async {
            let mut last = String::from("no other member in --initial-cluster");
            for url in &urls {
                match batchkv_server::peer::ask_members(url, Duration::from_secs(2)).await {
                    Ok(a) => return Ok(a),
                    Err(e) => last = format!("{url}: {}", e.message()),
                }
            }
            Err(format!(
                "cannot fetch cluster info from peer urls: could not retrieve cluster information \
                 from the given URLs ({last})"
            ))
        })?;
        let record = |bytes: &[u8]| batchkv_server::membership::MemberRecord::from_bytes(bytes);
        let me = answer
            .members
            .iter()
            .find(|m| {
                record(&m.record).is_some_and(|r| {
                    let mut u = r.peer_urls.clone();
                    u.sort();
                    u == advertised
                })
            })
            .ok_or_else(|| {
                format!(
                    "error validating peerURLs: no member of the running cluster has the peer \
                     URLs {} (add it first: etcdctl member add {} --peer-urls={})",
                    advertised.join(","),
                    args.name,
                    args.initial_advertise_peer_urls
                )
            })?;
        c.members.local_id = me.id;
        c.members.cluster_id = answer.cluster_id;
        // Every current member's record, not only the initial ones': replaying the log
        // rewrites them anyway, and a member that catches up by snapshot replays none.
        let initial_records = answer
            .members
            .iter()
            .map(|m| (m.id, m.record.clone()))
            .collect();
        let peers = answer
            .members
            .iter()
            .filter(|m| m.id != me.id)
            .filter_map(|m| Some((m.id, record(&m.record)?.peer_urls.into_iter().next()?)))
            .collect();
        c.joined = Some(Joined {
            initial_voters: answer.initial_voters,
            initial_records,
            peers,
        });
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let saved = MemberFile {
        id: c.members.local_id,
        cluster_id: c.members.cluster_id,
    };
    std::fs::write(&file, serde_json::to_vec(&saved).unwrap_or_default())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(())
}

/// `--initial-advertise-peer-urls`, split on commas, empty entries dropped.
fn advertised_peer_urls(args: &ServeArgs) -> Vec<String> {
    args.initial_advertise_peer_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `--initial-cluster` and its companions; None for a single node (no `--initial-cluster`).
fn cluster_config(args: &ServeArgs) -> Result<Option<ClusterFlags>, String> {
    let Some(initial) = &args.initial_cluster else {
        return Ok(None);
    };
    let advertised = advertised_peer_urls(args);
    let members = batchkv_server::membership::InitialCluster::parse(
        initial,
        &args.initial_cluster_token,
        &args.name,
        &advertised,
    )
    .map_err(|e| e.to_string())?;
    let listen_peer = match parse_urls(&args.listen_peer_urls, "--listen-peer-urls")? {
        (_, true) => {
            return Err(format!(
                "--listen-peer-urls: {}: https peer traffic is not served (http only)",
                args.listen_peer_urls
            ));
        }
        (addrs, false) if addrs.len() == 1 => addrs[0],
        _ => {
            return Err(format!(
                "--listen-peer-urls: {}: batchkv listens on one peer URL",
                args.listen_peer_urls
            ));
        }
    };
    let has_state = batchkv::Store::raft_dir(&args.data_dir).exists();
    Ok(Some(ClusterFlags {
        members,
        listen_peer,
        join: args.initial_cluster_state == "existing" && !has_state,
        joined: None,
    }))
}

/// `--snapshot-count` and `--experimental-snapshot-catchup-entries`, 0 meaning the default
/// (as etcd).
fn snapshot_settings(args: &ServeArgs) -> (u64, u64) {
    let or_default = |v: u64, d: u64| if v == 0 { d } else { v };
    (
        or_default(args.snapshot_count, DEFAULT_SNAPSHOT_COUNT),
        or_default(
            args.experimental_snapshot_catchup_entries,
            DEFAULT_SNAPSHOT_CATCHUP_ENTRIES,
        ),
    )
}

/// Opens the store as member `members.local_id` of `members`: raft's storage in the data
/// dir's `raft` subdirectory, messages over gRPC to each peer's first URL (tasks on `runtime`;
/// members added later get theirs from raft's configuration). A restarted member keeps the
/// membership raft stored; a joining one bootstraps with the running cluster's initial one.
fn replicated(
    builder: batchkv::StoreBuilder,
    data_dir: &std::path::Path,
    cluster: &ClusterFlags,
    (snapshot_entries, catch_up_entries): (u64, u64),
    runtime: &tokio::runtime::Handle,
) -> Result<(batchkv::StoreBuilder, batchkv_server::peer::RemovalSlot), String> {
    let members = &cluster.members;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let raft_dir = batchkv::Store::raft_dir(data_dir);
    let storage = batchkv_raft::RaftStorage::open_dir(&raft_dir)
        .map_err(|e| format!("cannot open {}: {e}", raft_dir.display()))?;
    let (voters, records, peers) = match &cluster.joined {
        Some(j) => (
            j.initial_voters.clone(),
            j.initial_records.clone(),
            j.peers.clone(),
        ),
        None => (members.ids(), members.records(), members.peers()),
    };
    let transport = batchkv_server::peer::GrpcTransport::new(
        runtime,
        members.local_id,
        &peers,
        &batchkv_server::peer::TransportConfig::default(),
    )
    .map_err(|e| format!("--initial-cluster: {e}"))?;
    let mut node = batchkv_raft::NodeConfig::new(members.local_id, &voters);
    node.initial_records = records;
    // etcd's followers forward proposals to the leader: a client may write to any member.
    node.forward_proposals = true;
    node.snapshot_entries = snapshot_entries;
    node.catch_up_entries = catch_up_entries;
    let removal = transport.removal_slot();
    Ok((
        builder.replicated(node, storage, std::sync::Arc::new(transport)),
        removal,
    ))
}

/// Serves the peer service (raft messages in, `Peer.Member`, the lease requests forwarded to
/// the leader) until `stop` turns true.
async fn serve_peers(
    store: &Store,
    cluster: &ClusterFlags,
    name: &str,
    client_urls: &[String],
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let mailbox = store.raft_mailbox().ok_or("the store is not replicated")?;
    let listener = tokio::net::TcpListener::bind(cluster.listen_peer)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cluster.listen_peer))?;
    let service = batchkv_server::peer::PeerService::new(cluster.members.local_id, mailbox)
        .with_member(name, client_urls)
        .with_cluster(store.clone(), cluster.members.cluster_id)
        .with_store(store.clone());
    tracing::info!(addr = %cluster.listen_peer, id = %format!("{:x}", cluster.members.local_id), "serving peer traffic");
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = batchkv_server::peer::serve_peer(listener, service, stopped).await {
            tracing::error!(error = %e, "peer service failed");
        }
    });
    Ok(())
}

/// SIGTERM or SIGINT, whichever comes first; its name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// `http://host:port,...` (or all `https://`) as socket addresses (host: an IP address or a
/// name, e.g. localhost), and whether they are https.
fn parse_urls(urls: &str, flag: &str) -> Result<(Vec<SocketAddr>, bool), String> {
    let mut out = Vec::new();
    let mut schemes = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let hostport = match url.split_once("://") {
            Some((scheme @ ("http" | "https"), rest)) => {
                schemes.push(scheme == "https");
                rest.trim_end_matches('/')
            }
            Some((scheme, _)) => {
                return Err(format!("{flag}: {url}: unsupported scheme {scheme:?}"));
            }
            None => return Err(format!("{flag}: {url}: expected http://host:port")),
        };
        let addrs: Vec<SocketAddr> = hostport
            .to_socket_addrs()
            .map_err(|e| format!("{flag}: {url}: {e}"))?
            .collect();
        // A name (localhost) resolves to several addresses: the first of each family.
        let first = addrs
            .first()
            .copied()
            .ok_or_else(|| format!("{flag}: {url}: resolves to no address"))?;
        out.push(first);
    }
    if out.is_empty() {
        return Err(format!("{flag}: no URL given"));
    }
    let https = schemes[0];
    if schemes.iter().any(|s| *s != https) {
        return Err(format!(
            "{flag}: {urls}: http and https mixed (batchkv serves every client URL with one scheme)"
        ));
    }
    Ok((out, https))
}

/// etcd's client TLS flags: None for plaintext; the files read and checked.
fn tls_config(args: &ServeArgs, https: bool) -> Result<Option<batchkv_server::TlsConfig>, String> {
    let read = |path: &PathBuf, flag: &str| {
        std::fs::read(path).map_err(|e| format!("{flag}: {}: {e}", path.display()))
    };
    let show = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let (cert, key) = match (&args.cert_file, &args.key_file) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if https {
                // etcd's words.
                return Err(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                    args.listen_client_urls
                ));
            }
            if args.trusted_ca_file.is_some() || args.client_cert_auth {
                return Err(
                    "--trusted-ca-file and --client-cert-auth need --cert-file, --key-file and https:// client URLs"
                        .to_owned(),
                );
            }
            return Ok(None);
        }
        _ => {
            return Err(format!(
                "KeyFile and CertFile must both be present[key: {}, cert: {}]",
                show(&args.key_file),
                show(&args.cert_file)
            ));
        }
    };
    if !https {
        return Err(format!(
            "--listen-client-urls: {} is http while --cert-file and --key-file are given: use https://",
            args.listen_client_urls
        ));
    }
    if args.client_cert_auth && args.trusted_ca_file.is_none() {
        return Err(
            "--client-cert-auth needs --trusted-ca-file (the CA client certificates must be signed by)"
                .to_owned(),
        );
    }
    let tls = batchkv_server::TlsConfig {
        cert_pem: read(cert, "--cert-file")?,
        key_pem: read(key, "--key-file")?,
        // As etcd: a trusted CA file alone already requires client certificates.
        client_ca_pem: match &args.trusted_ca_file {
            Some(ca) => Some(read(ca, "--trusted-ca-file")?),
            None => None,
        },
    };
    tls.check()
        .map_err(|e| format!("--cert-file/--key-file/--trusted-ca-file: {e}"))?;
    Ok(Some(tls))
}

/// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`.
fn auto_compaction(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
    let retention = retention.trim();
    if retention.is_empty() || retention == "0" {
        return Ok(None);
    }
    match mode {
        "revision" => {
            let n: i64 = retention.parse().map_err(|_| {
                format!("--auto-compaction-retention: {retention:?} is not a number of revisions")
            })?;
            Ok((n > 0).then_some(AutoCompaction::Revision(n)))
        }
        "periodic" => {
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => go_duration(retention).ok_or_else(|| {
                    format!("--auto-compaction-retention: {retention:?} is not a duration")
                })?,
            };
            Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
        }
        other => Err(format!(
            "--auto-compaction-mode: {other:?}: expected periodic or revision"
        )),
    }
}

/// A keepalive duration flag: a Go duration, `0` (off: None).
fn keepalive(s: &str, flag: &str) -> Result<Option<Duration>, String> {
    if s == "0" {
        return Ok(None);
    }
    match go_duration(s) {
        Some(d) if !d.is_zero() => Ok(Some(d)),
        Some(_) => Ok(None),
        None => Err(format!("{flag}: {s:?} is not a duration (e.g. 2h, 20s, 0)")),
    }
}

/// A Go duration of whole units: `1h30m`, `90s`, `500ms`.
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = match &rest[..unit] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            _ => return None,
        };
        total += d;
        rest = &rest[unit..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_retention() {
        assert_eq!(
            parse_urls("http://127.0.0.1:2379,http://127.0.0.1:22379", "--x"),
            Ok((
                vec![
                    "127.0.0.1:2379".parse().expect("addr"),
                    "127.0.0.1:22379".parse().expect("addr")
                ],
                false
            ))
        );
        assert_eq!(
            parse_urls("https://127.0.0.1:2379", "--x"),
            Ok((vec!["127.0.0.1:2379".parse().expect("addr")], true))
        );
        assert!(parse_urls("https://127.0.0.1:2379,http://127.0.0.1:2380", "--x").is_err());
        assert!(parse_urls("unix://x", "--x").is_err());
        assert!(parse_urls("127.0.0.1:2379", "--x").is_err());
        assert_eq!(auto_compaction("periodic", "0"), Ok(None));
        assert_eq!(
            auto_compaction("periodic", "1h30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            auto_compaction("periodic", "2"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(7200))))
        );
        assert_eq!(
            auto_compaction("revision", "1000"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        assert!(auto_compaction("revision", "1h").is_err());
        assert!(auto_compaction("weekly", "1").is_err());
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("5x"), None);
        assert_eq!(keepalive("0", "--k"), Ok(None));
        assert_eq!(keepalive("2h", "--k"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(keepalive("20s", "--k"), Ok(Some(Duration::from_secs(20))));
        assert!(
            keepalive("soon", "--k")
                .expect_err("not a duration")
                .contains("--k")
        );
    }
}
