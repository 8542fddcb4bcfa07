//! etcd's v3 gRPC API over a batchkv [`Store`]: etcd's own clients (etcdctl 3.4, the Go
//! `clientv3`, the Rust `etcd-client` crate) talk to batchkv unchanged.
//!
//! ```text
//! client ─gRPC─► tonic (tokio workers) ─► service (service/*.rs): etcd message → batchkv op
//!        ─► blocking.rs: Store::submit_async, awaited (group commit, one WriteBatch per
//!        entry) ─► answer → etcd message ─► client
//! ```
//!
//! Served: KV (Range, Put, DeleteRange, Txn, Compact), Watch (the bidirectional stream),
//! Lease (Grant, Revoke, KeepAlive, TimeToLive, Leases), Maintenance (Status, Hash, HashKV,
//! Snapshot, Defragment, Alarm), Cluster (MemberList, MemberAdd, MemberRemove, MemberPromote).
//! Every other RPC answers `Unimplemented`
//! naming itself. The same port serves etcd's HTTP/JSON gateway (`POST /v3/kv/range`, ...;
//! gateway.rs) over the same services. Errors are etcd's codes and texts ([`error`]).
//! docs/ETCD-COMPAT.md has the table and every difference.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = batchkv::Store::open("/tmp/batchkv.data")?;
//! let server = batchkv_server::Server::bind(store, batchkv_server::ServerConfig::default()).await?;
//! println!("serving on {:?}", server.local_addrs());
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod blocking;
mod codec;
mod convert;
pub mod error;
mod gateway;
pub mod membership;
pub mod peer;
mod quota;
mod service;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use batchkv::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};

/// The generated protobuf messages and tonic service traits (etcd's packages, and batchkv's
/// own `batchkvpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, rust_2018_idioms)]
pub mod pb {
    /// `etcdserverpb`: the RPC messages and services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
        // The protobuf JSON mapping (serde impls by pbjson-build), for the HTTP gateway.
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
    /// `mvccpb`: KeyValue and Event.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
        // The protobuf JSON mapping (serde impls by pbjson-build), for the HTTP gateway.
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    /// `authpb`: users and roles (messages only; Auth is not served).
    pub mod authpb {
        tonic::include_proto!("authpb");
        // The protobuf JSON mapping (serde impls by pbjson-build), for the HTTP gateway.
        include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
    }
    /// `batchkvpb`: batchkv's own peer service (raft messages between members), server and
    /// client.
    pub mod batchkvpb {
        tonic::include_proto!("batchkvpb");
    }
}

/// The `cluster_id` of every response header: "batchkv" in ASCII, read as a big-endian number
/// (the same as the `batchkv` CLI's).
pub const CLUSTER_ID: u64 = 0x0062_6174_6368_6b76;
/// The member id (one node).
pub const MEMBER_ID: u64 = 1;
/// The raft term every header reports (no Raft yet: one term).
pub const RAFT_TERM: u64 = 1;
/// The version Status reports: the etcd API batchkv speaks.
pub const ETCD_VERSION: &str = "3.4.0";
/// etcd's extra allowance over `--max-request-bytes` for gRPC framing (`grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Addresses to listen on (etcd's `--listen-client-urls`; port 0 picks a free one).
    pub listen: Vec<SocketAddr>,
    /// The member's name (etcd's `--name`), reported by MemberList.
    pub name: String,
    /// The client URLs MemberList reports (etcd's `--advertise-client-urls`); empty: the
    /// listen addresses as `http://` URLs.
    pub advertise_client_urls: Vec<String>,
    /// The largest request (etcd's `--max-request-bytes`): gRPC messages above it plus
    /// [`GRPC_OVERHEAD_BYTES`] are refused by the transport; ops above it by the store (open it
    /// with the same limit: `MvccConfig::max_request_bytes`).
    pub max_request_bytes: usize,
    /// How often a `progress_notify` watch without events gets a progress notification (etcd:
    /// 10 minutes).
    pub progress_notify_interval: Duration,
    /// Concurrent gRPC streams per connection (etcd's `--max-concurrent-streams`; etcd's
    /// default is unbounded, batchkv's 4,096).
    pub max_concurrent_streams: u32,
    /// How long a connection may be idle before the server pings it (etcd's
    /// `--grpc-keepalive-interval`, 2 h); None: never.
    pub keepalive_interval: Option<Duration>,
    /// How long the server waits for a ping's answer before it closes the connection (etcd's
    /// `--grpc-keepalive-timeout`, 20 s); None: tonic's default (20 s).
    pub keepalive_timeout: Option<Duration>,
    /// The space quota in bytes (etcd's `--quota-backend-bytes`; 0 or less: none): past it the
    /// NOSPACE alarm is raised and writes are refused until it is disarmed (`quota.rs`).
    pub quota_backend_bytes: i64,
    /// Serve etcd's HTTP/JSON gateway (`POST /v3/...`) on the client port besides gRPC (etcd's
    /// `--enable-grpc-gateway`, on by default).
    pub grpc_gateway: bool,
    /// Where Snapshot writes its temporary checkpoint (on the data dir's file system, RocksDB
    /// hard-links the files instead of copying them); None: the system's temp dir.
    pub snapshot_dir: Option<PathBuf>,
    /// TLS on every client listener (etcd's `--cert-file`, `--key-file`,
    /// `--trusted-ca-file`); None: plaintext.
    pub tls: Option<TlsConfig>,
    /// The cluster this member belongs to (etcd's `--initial-cluster`; the store must be
    /// opened replicated, `StoreBuilder::replicated`, with the same member ids); None: one
    /// node ([`CLUSTER_ID`], [`MEMBER_ID`]).
    pub cluster: Option<membership::InitialCluster>,
    /// etcd's `--initial-cluster-token`: MemberAdd computes the new member's id from it (with
    /// the peer URLs and the time).
    pub cluster_token: String,
}

/// TLS for the client listeners: rustls (ring), ALPN `h2` and `http/1.1` (gRPC and the
/// gateway's HTTP/2 and HTTP/1.1 clients). Every listener serves TLS when it is set;
/// MemberList's client URLs are then `https://`.
#[derive(Clone)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM (etcd's `--cert-file`).
    pub cert_pem: Vec<u8>,
    /// The server's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (etcd's `--key-file`).
    pub key_pem: Vec<u8>,
    /// The CAs whose client certificates are accepted, PEM (etcd's `--trusted-ca-file`): when
    /// set, a client must present a certificate signed by one of them, as etcd requires with
    /// a trusted CA file or `--client-cert-auth`; None: no client certificate is asked for.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("client_ca_pem", &self.client_ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

impl TlsConfig {
    /// rustls' server settings (ring): this certificate and key; with a trusted CA, a client
    /// must present a certificate signed by it (`WebPkiClientVerifier`), without one none is
    /// asked for; ALPN `h2` and `http/1.1`.
    fn rustls(&self) -> std::io::Result<Arc<rustls::ServerConfig>> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        fn invalid(what: &str, e: impl std::fmt::Display) -> std::io::Error {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        }
        // The process' default provider: ring, the only one built (tokio-rustls' and tonic's
        // `ring` features), as tonic's own acceptor does.
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_slice_iter(ca)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("trusted CA certificates", e))?;
                roots.add_parsable_certificates(certs);
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| invalid("trusted CA certificates", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("server certificate", e))?;
        if chain.is_empty() {
            return Err(invalid("server certificate", "no PEM certificate found"));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| invalid("server key", e))?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid("server certificate and key", e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Checks the certificates and key parse and fit together (what serving would do), so a
    /// bad file is an error before anything listens.
    ///
    /// # Errors
    /// `InvalidInput`, with rustls' reason.
    pub fn check(&self) -> std::io::Result<()> {
        self.rustls().map(drop)
    }
}

/// How long a client has to finish its TLS handshake (tonic's default too).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's side of a TLS handshake on `conn`. When it fails, rustls has written its alert
/// (`CertificateRequired`, ...): the connection is then closed in order, our side first, what
/// the client had already sent (its first request follows its last handshake message at once
/// in TLS 1.3) read and dropped until it closes too, so that the kernel does not answer that
/// unread data with a reset, which can destroy the alert before the client reads it.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    conn: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    use tokio::io::AsyncWriteExt;
    match acceptor.accept(conn).into_fallible().await {
        Ok(tls) => Ok(tls),
        Err((e, mut conn)) => {
            let _ = conn.shutdown().await;
            let _ = tokio::io::copy(&mut conn, &mut tokio::io::sink()).await;
            Err(e)
        }
    }
}

/// The TLS connections of `tcp`. Every handshake runs in a task of its own, for
/// [`TLS_HANDSHAKE_TIMEOUT`] at most, so a slow or silent client holds up no other; a failed
/// one is logged (debug) and dropped. Accepting stops when the stream returned is dropped
/// (tonic drops it when shutting down), which closes the listeners.
fn tls_incoming(
    mut tcp: impl Stream<Item = std::io::Result<TcpStream>> + Send + Unpin + 'static,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                () = tx.closed() => return,
                conn = tcp.next() => conn,
            };
            match conn {
                None => return,
                // Handed on as they were before TLS: tonic logs and skips them.
                Some(Err(e)) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(conn)) => {
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        let peer = conn.peer_addr().ok();
                        match tokio::time::timeout(
                            TLS_HANDSHAKE_TIMEOUT,
                            handshake(&acceptor, conn),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(Ok(tls)).await;
                            }
                            Ok(Err(e)) => tracing::debug!(?peer, %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2379))],
            name: "default".to_owned(),
            advertise_client_urls: Vec::new(),
            max_request_bytes: batchkv::DEFAULT_MAX_REQUEST_BYTES,
            progress_notify_interval: Duration::from_secs(600),
            max_concurrent_streams: 4096,
            keepalive_interval: Some(Duration::from_secs(2 * 60 * 60)),
            keepalive_timeout: Some(Duration::from_secs(20)),
            quota_backend_bytes: 2 << 30,
            grpc_gateway: true,
            snapshot_dir: None,
            tls: None,
            cluster: None,
            cluster_token: membership::DEFAULT_CLUSTER_TOKEN.to_owned(),
        }
    }
}

/// What the services share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub store: Store,
    /// This member's id ([`MEMBER_ID`] for one node).
    pub member_id: u64,
    /// The cluster's id ([`CLUSTER_ID`] for one node).
    pub cluster_id: u64,
    /// The members, when replicated.
    pub cluster: Option<membership::InitialCluster>,
    /// etcd's cluster token (MemberAdd's ids).
    pub cluster_token: String,
    /// What the other members said about themselves (MemberList).
    pub members: std::sync::Mutex<HashMap<u64, pb::batchkvpb::MemberInfo>>,
    pub name: String,
    pub client_urls: Vec<String>,
    pub progress_notify_interval: Duration,
    pub quota: quota::Quota,
    pub snapshot_dir: Option<PathBuf>,
    /// The size a `fragment` watch's responses are split under: `--max-request-bytes` plus
    /// [`GRPC_OVERHEAD_BYTES`], as etcd's watch server.
    pub fragment_bytes: usize,
    /// Becomes true when the server stops: the streams end.
    pub stopping: watch::Receiver<bool>,
    /// The other members' peer services, for the lease requests forwarded to the leader
    /// (replicated only).
    pub peers: Option<peer::PeerClients>,
}

impl Ctx {
    /// A full header at `revision`.
    pub fn header(&self, revision: i64) -> Option<pb::etcdserverpb::ResponseHeader> {
        Some(pb::etcdserverpb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term(),
        })
    }

    /// Whether member `id` already said who it is.
    pub fn known_member(&self, id: u64) -> bool {
        self.members.lock().is_ok_and(|m| m.contains_key(&id))
    }

    /// What member `id` said about itself.
    pub fn member_info(&self, id: u64) -> Option<pb::batchkvpb::MemberInfo> {
        self.members.lock().ok()?.get(&id).cloned()
    }

    /// Keeps what a member said about itself.
    pub fn remember_member(&self, info: pb::batchkvpb::MemberInfo) {
        if let Ok(mut m) = self.members.lock() {
            m.insert(info.id, info);
        }
    }

    /// The raft term this member is in ([`RAFT_TERM`] for one node).
    pub fn raft_term(&self) -> u64 {
        self.store.raft_status().map_or(RAFT_TERM, |s| s.term)
    }
}

/// A bound server: its listeners are open (clients can connect); [`Server::serve`] answers.
#[derive(Debug)]
pub struct Server {
    store: Store,
    config: ServerConfig,
    quota: quota::Quota,
    listeners: Vec<TcpListener>,
    /// rustls' settings, when serving TLS (checked at bind).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    /// Binds every listen address of `config`.
    ///
    /// # Errors
    /// An address cannot be bound; the TLS certificates or key do not parse
    /// ([`TlsConfig::check`]); the persisted alarm cannot be read.
    pub async fn bind(store: Store, config: ServerConfig) -> std::io::Result<Server> {
        let tls = config.tls.as_ref().map(TlsConfig::rustls).transpose()?;
        // A NOSPACE alarm raised before a restart is still raised (etcd keeps alarms in its
        // backend).
        let quota = quota::Quota::open(
            config.quota_backend_bytes,
            Some(store.path().join(quota::ALARM_FILE)),
        )?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for addr in &config.listen {
            listeners.push(TcpListener::bind(addr).await?);
        }
        Ok(Server {
            store,
            config,
            quota,
            listeners,
            tls,
        })
    }

    /// The addresses bound (with the ports picked for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops gracefully: no new connections or
    /// requests, the watch and keep-alive streams end (`Unavailable`, etcd's "server
    /// stopped"), and the requests in flight are answered. The store stays open: the caller
    /// closes it ([`blocking::close`]).
    ///
    /// # Errors
    /// The transport failed.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        use pb::etcdserverpb::{
            auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
            lease_server::LeaseServer, maintenance_server::MaintenanceServer,
            watch_server::WatchServer,
        };

        let addrs = self.local_addrs();
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let client_urls = if self.config.advertise_client_urls.is_empty() {
            addrs.iter().map(|a| format!("{scheme}://{a}")).collect()
        } else {
            self.config.advertise_client_urls.clone()
        };
        let (stop_tx, stopping) = watch::channel(false);
        let (member_id, cluster_id) = self
            .config
            .cluster
            .as_ref()
            .map_or((MEMBER_ID, CLUSTER_ID), |c| (c.local_id, c.cluster_id));
        let ctx =
            Arc::new(Ctx {
                store: self.store.clone(),
                member_id,
                cluster_id,
                cluster: self.config.cluster.clone(),
                cluster_token: self.config.cluster_token.clone(),
                members: std::sync::Mutex::default(),
                name: self.config.name.clone(),
                client_urls,
                progress_notify_interval: self.config.progress_notify_interval,
                quota: self.quota,
                snapshot_dir: self.config.snapshot_dir.clone(),
                fragment_bytes: self.config.max_request_bytes + GRPC_OVERHEAD_BYTES,
                stopping,
                peers: self.config.cluster.as_ref().map(|_| {
                    peer::PeerClients::new(self.store.clone(), service::PEER_CALL_TIMEOUT)
                }),
            });
        let svc = service::Etcd::new(ctx);
        let max = self.config.max_request_bytes + GRPC_OVERHEAD_BYTES;
        let mut grpc = tonic::service::Routes::builder();
        grpc.add_service(KvServer::new(svc.clone()).max_decoding_message_size(max))
            .add_service(WatchServer::new(svc.clone()).max_decoding_message_size(max))
            .add_service(LeaseServer::new(svc.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(svc.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(svc.clone()).max_decoding_message_size(max))
            .add_service(AuthServer::new(svc.clone()).max_decoding_message_size(max));
        // etcd's HTTP/JSON gateway on the same port, over the same services (gateway.rs).
        let routes = if self.config.grpc_gateway {
            gateway::routes(grpc.routes(), &svc, self.config.max_request_bytes)
        } else {
            gateway::without_gateway(grpc.routes())
        };
        // Every listener's connections, with Nagle off (small answers go out at once).
        let mut incoming = tokio_stream::StreamMap::new();
        for (i, l) in self.listeners.into_iter().enumerate() {
            incoming.insert(i, TcpListenerStream::new(l));
        }
        let incoming = incoming.map(|(_, conn)| {
            conn.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        });
        tracing::info!(
            ?addrs,
            tls = self.config.tls.is_some(),
            "serving etcd's v3 API"
        );
        let router = tonic::transport::Server::builder()
            // HTTP/1.1 as well as HTTP/2: the gateway's JSON clients (curl, etcd3gw) speak it.
            .accept_http1(true)
            .max_concurrent_streams(self.config.max_concurrent_streams)
            // etcd's defaults: a ping after 2 hours idle, 20 s to answer it.
            .http2_keepalive_interval(self.config.keepalive_interval)
            .http2_keepalive_timeout(self.config.keepalive_timeout)
            .add_routes(routes);
        let shutdown = async move {
            shutdown.await;
            tracing::info!("stopping: no new requests; ending the streams");
            let _ = stop_tx.send(true);
        };
        // TLS is accepted here rather than by tonic's `tls_config`, whose ALPN is `h2` only:
        // the gateway's HTTP/1.1 clients (etcd3gw over https) need `http/1.1` too.
        match self.tls {
            None => {
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            Some(config) => {
                router
                    .serve_with_incoming_shutdown(tls_incoming(incoming, config), shutdown)
                    .await
            }
        }
    }
}
