//! Raft traffic between cluster members over batchkv's own tonic service, `batchkvpb.Peer`
//! (`proto/batchkvpb/raft.proto`): each member serves [`PeerService`] and sends through a
//! [`GrpcTransport`], one long-lived client stream per peer.
//!
//! ```text
//! RaftNode thread ─Transport::send─► bounded queue per peer (full: dropped, counted; raft resends)
//!   ─► tokio task per peer ─► one client stream `Peer.Send` (reconnects with backoff)
//!   ─► peer's PeerService ─► its RaftNode's Mailbox
//! ```
//!
//! The raft messages stay opaque bytes (raft-rs's own codec, `batchkv-raft`); a frame only adds
//! the sender's and the receiver's ids.
//!
//! The same service carries the lease requests only the leader can answer (etcd forwards them
//! over its peer HTTP `/leases` endpoints): a member that is not the leader forwards a
//! keep-alive (`Peer.LeaseRenew`) or a TimeToLive (`Peer.LeaseTimeToLive`) to the leader
//! through [`PeerClients`]; the leader's [`PeerService`] answers from its store
//! ([`PeerService::with_store`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use batchkv::Store;
use batchkv_raft::{Mailbox, Membership, RemovalNotice, Transport};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::membership::MemberRecord;
use crate::pb::batchkvpb::peer_client::PeerClient;
use crate::pb::batchkvpb::peer_server::{Peer, PeerServer};
use crate::pb::batchkvpb::{
    LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberInfo, MemberRecord as PbMemberRecord, MemberRequest, MembersRequest, MembersResponse,
    PromoteRequest, PromoteResponse, RaftFrame, SendResponse,
};

/// The largest raft message a [`PeerService`] accepts (one frame, or the chunks of one joined):
/// raft's snapshots travel as one message (the state machine's bytes), so the limit is
/// generous.
pub const MAX_FRAME_BYTES: usize = 512 * 1024 * 1024;

/// What a member answers a removed member's raft traffic (FailedPrecondition), and what the
/// removed member logs before it stops: etcd's text (its peer transport answers HTTP 410).
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// How often an open stream re-checks that its sender is still a member.
const REMOVED_CHECK: Duration = Duration::from_secs(1);

/// Whether `status` is a member's refusal of a removed member's traffic ([`MEMBER_REMOVED`]).
pub fn is_removed_refusal(status: &Status) -> bool {
    status.code() == tonic::Code::FailedPrecondition && status.message() == MEMBER_REMOVED
}

/// Where a [`GrpcTransport`] finds its node's [`RemovalNotice`] (set once the node runs).
pub type RemovalSlot = Arc<std::sync::OnceLock<RemovalNotice>>;

/// A message above this many bytes is sent in chunks of this size (frames with `more` set but
/// the last), so no gRPC message is large whatever the snapshot's size.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The frames that carry `message`: one, or its chunks of [`CHUNK_BYTES`].
fn frames_of(from: u64, to: u64, message: Vec<u8>) -> Vec<RaftFrame> {
    if message.len() <= CHUNK_BYTES {
        return vec![RaftFrame {
            from,
            to,
            message,
            more: false,
        }];
    }
    let n = message.len().div_ceil(CHUNK_BYTES);
    message
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, chunk)| RaftFrame {
            from,
            to,
            message: chunk.to_vec(),
            more: i + 1 < n,
        })
        .collect()
}

/// The `batchkvpb.Peer` service of member `id`: every frame received is handed to the local
/// `RaftNode` through its [`Mailbox`].
#[derive(Clone, Debug)]
pub struct PeerService {
    id: u64,
    mailbox: Mailbox,
    stopping: watch::Receiver<bool>,
    info: MemberInfo,
    /// The store and the cluster id, for `Peer.Members`.
    cluster: Option<(Store, u64)>,
    /// The member's store, for the forwarded lease requests (None: they answer Unavailable).
    store: Option<Store>,
}

impl PeerService {
    /// The service of member `id`, delivering to `mailbox` (`RaftNode::mailbox`). Its streams
    /// run until the senders close them; [`serve_peer`] ends them when it stops.
    pub fn new(id: u64, mailbox: Mailbox) -> PeerService {
        let (_tx, stopping) = watch::channel(false);
        PeerService {
            id,
            mailbox,
            stopping,
            info: MemberInfo {
                id,
                ..MemberInfo::default()
            },
            cluster: None,
            store: None,
        }
    }

    /// Answers the lease requests other members forward to the leader (`Peer.LeaseRenew`,
    /// `Peer.LeaseTimeToLive`) from `store`, this member's (they are refused while this member
    /// is not the leader).
    #[must_use]
    pub fn with_store(mut self, store: Store) -> PeerService {
        self.store = Some(store);
        self
    }

    /// Whether member `from` was removed from the cluster (this member applied its removal,
    /// and it is not a member again).
    fn removed(&self, from: u64) -> bool {
        let Some((store, _)) = &self.cluster else {
            return false;
        };
        store.membership().is_some_and(|m| {
            m.removed.contains(&from) && !m.voters.contains(&from) && !m.learners.contains(&from)
        })
    }

    /// The store, if this member is the leader; else the error the forwarding member retries on.
    fn leader_store(&self) -> Result<&Store, Status> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Status::unavailable("this member serves no leases"))?;
        match store.raft_status() {
            Some(s) if !s.is_leader => Err(crate::error::status(&match s.leader {
                Some(leader) => batchkv::StoreError::NotLeader { leader },
                None => batchkv::StoreError::NoLeader,
            })),
            _ => Ok(store),
        }
    }

    /// Answers `Peer.Members` from `store`'s membership, in cluster `cluster_id`.
    #[must_use]
    pub fn with_cluster(mut self, store: Store, cluster_id: u64) -> PeerService {
        self.cluster = Some((store, cluster_id));
        self
    }

    /// Answers `Peer.Member` with this member's `name` and `client_urls`.
    #[must_use]
    pub fn with_member(mut self, name: &str, client_urls: &[String]) -> PeerService {
        self.info.name = name.to_owned();
        self.info.client_urls = client_urls.to_vec();
        self
    }

    /// The tonic server for this service, accepting frames of up to two [`CHUNK_BYTES`] (a
    /// larger message comes in chunks, joined up to [`MAX_FRAME_BYTES`]), to mount in a router
    /// of one's own. Its streams last as long as their senders keep them open, so
    /// a graceful shutdown of that router waits for them: [`serve_peer`] ends them itself.
    pub fn into_server(self) -> PeerServer<PeerService> {
        PeerServer::new(self).max_decoding_message_size(2 * CHUNK_BYTES)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(
        &self,
        request: Request<Streaming<RaftFrame>>,
    ) -> Result<Response<SendResponse>, Status> {
        let mut frames = request.into_inner();
        let stopping = stopped(self.stopping.clone());
        tokio::pin!(stopping);
        // The chunks of a large message so far (frames with `more`).
        let mut partial: Vec<u8> = Vec::new();
        // When the sender was last found to be a member (None: not yet).
        let mut checked: Option<Instant> = None;
        loop {
            let frame = tokio::select! {
                frame = frames.message() => frame?,
                () = &mut stopping => return Err(Status::unavailable("peer server stopped")),
            };
            let Some(frame) = frame else {
                return Ok(Response::new(SendResponse {}));
            };
            // A removed member's traffic is refused, and it is told why (etcd's peers answer it
            // "removed"): it may have been cut off when its removal committed.
            if checked.is_none_or(|t| t.elapsed() >= REMOVED_CHECK) {
                if self.removed(frame.from) {
                    tracing::warn!(member = %format!("{:x}", frame.from), "refused the traffic of a removed member");
                    return Err(Status::failed_precondition(MEMBER_REMOVED));
                }
                checked = Some(Instant::now());
            }
            if frame.to != self.id {
                return Err(Status::invalid_argument(format!(
                    "raft frame from member {:x} is for member {:x}, this is member {:x}",
                    frame.from, frame.to, self.id
                )));
            }
            let message = if frame.more || !partial.is_empty() {
                if partial.len() + frame.message.len() > MAX_FRAME_BYTES {
                    return Err(Status::resource_exhausted(format!(
                        "raft message from member {:x} is larger than {MAX_FRAME_BYTES} bytes",
                        frame.from
                    )));
                }
                partial.extend_from_slice(&frame.message);
                if frame.more {
                    continue;
                }
                std::mem::take(&mut partial)
            } else {
                frame.message
            };
            if !self.mailbox.deliver(message) {
                return Err(Status::unavailable("raft node stopped"));
            }
        }
    }

    async fn member(
        &self,
        _request: Request<MemberRequest>,
    ) -> Result<Response<MemberInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn members(
        &self,
        _request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let Some((store, cluster_id)) = &self.cluster else {
            return Err(Status::unavailable("this member serves no membership"));
        };
        let m = store
            .membership()
            .ok_or_else(|| Status::unavailable("etcdserver: server stopped"))?;
        let members = m
            .voters
            .iter()
            .map(|id| (*id, false))
            .chain(m.learners.iter().map(|id| (*id, true)))
            .map(|(id, is_learner)| PbMemberRecord {
                id,
                record: m.records.get(&id).cloned().unwrap_or_default(),
                is_learner,
            })
            .collect();
        Ok(Response::new(MembersResponse {
            cluster_id: *cluster_id,
            initial_voters: m.initial_voters,
            members,
        }))
    }

    async fn lease_renew(
        &self,
        request: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let id = request.into_inner().id;
        let store = self.leader_store()?;
        // The store refuses it too if leadership moved meanwhile (NotLeader: Unavailable).
        let ttl = crate::blocking::run(store, move |s| s.lease_keep_alive(id))
            .await?
            .map_err(|e| crate::error::status(&e))?;
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let store = self.leader_store()?;
        let t = crate::blocking::run(store, move |s| s.lease_time_to_live(r.id, r.keys)).await?;
        Ok(Response::new(LeaseTimeToLiveResponse {
            id: t.id,
            ttl: t.ttl,
            granted_ttl: t.granted_ttl,
            keys: t.keys.into_iter().map(|k| k.to_vec()).collect(),
        }))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let Some((store, _)) = &self.cluster else {
            return Err(Status::unavailable("this member serves no membership"));
        };
        promote_here(store, request.into_inner().id).await?;
        Ok(Response::new(PromoteResponse {}))
    }
}

/// Promotes learner `id` at this member (the leader): the same checks and texts as
/// MemberPromote.
async fn promote_here(store: &batchkv::Store, id: u64) -> Result<(), Status> {
    let m = store
        .membership()
        .ok_or_else(|| Status::unavailable(crate::error::STOPPED))?;
    let record = crate::membership::promoted_record(&m.records, id);
    crate::blocking::run(store, move |s| {
        s.propose_conf_change(batchkv::ConfChangeKind::AddVoter, id, record)
    })
    .await?
    .map(drop)
    .map_err(crate::service::conf_status)
}

/// Asks the member serving `Peer` at `url` (the leader) to promote learner `id`.
///
/// # Errors
/// The leader's refusal (etcd's texts), or no answer within `timeout`.
pub async fn ask_promote(url: &str, id: u64, timeout: Duration) -> Result<(), Status> {
    ask(url, timeout, |mut c| async move {
        c.promote(PromoteRequest { id }).await.map(drop)
    })
    .await
}

/// Asks the member serving `Peer` at `url` for the cluster's members, within `timeout`
/// (how a member joining a running cluster learns its id and the cluster's).
///
/// # Errors
/// `url` is not a URI, or the member did not answer in time.
pub async fn ask_members(url: &str, timeout: Duration) -> Result<MembersResponse, Status> {
    ask(url, timeout, |mut c| async move {
        c.members(MembersRequest {}).await.map(Response::into_inner)
    })
    .await
}

/// Member `id`'s peer URL in `membership`: the first of its record's (etcd's member JSON)
/// peer URLs. `None` for a member not in it (never added, or removed) or without a record.
/// The one lookup the transport ([`Transport::members_changed`]) and [`PeerClients`] share.
pub fn peer_url(membership: &Membership, id: u64) -> Option<String> {
    if !membership.voters.contains(&id) && !membership.learners.contains(&id) {
        return None;
    }
    membership
        .records
        .get(&id)
        .and_then(|r| MemberRecord::from_bytes(r))
        .and_then(|r| r.peer_urls.into_iter().next())
}

/// Clients of the other members' peer services, for the requests a member forwards to the
/// leader (lease keep-alives and TimeToLive): a member's URL is looked up in the live
/// membership (raft's member records, as this member applied them) at each call, so a
/// member added later is reached, a removed one is not, and an updated URL is followed; one
/// lazily connected channel per member and URL.
#[derive(Debug)]
pub struct PeerClients {
    store: Store,
    channels: std::sync::Mutex<HashMap<u64, (String, Channel)>>,
    timeout: Duration,
}

impl PeerClients {
    /// Clients of the members of `store`'s cluster, each call bounded by `timeout`.
    pub fn new(store: Store, timeout: Duration) -> PeerClients {
        PeerClients {
            store,
            channels: std::sync::Mutex::default(),
            timeout,
        }
    }

    fn client(&self, to: u64) -> Result<PeerClient<Channel>, Status> {
        let membership = self
            .store
            .membership()
            .ok_or_else(|| Status::unavailable(crate::error::STOPPED))?;
        let url = peer_url(&membership, to)
            .ok_or_else(|| Status::unavailable(format!("member {to:x} is not a known peer")))?;
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, c)) = channels.get(&to)
            && *known == url
        {
            return Ok(PeerClient::new(c.clone()));
        }
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::invalid_argument(format!("{url}: {e}")))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        // Channels of members no longer in the membership go with this one's change.
        channels.retain(|id, _| peer_url(&membership, *id).is_some());
        channels.insert(to, (url, channel.clone()));
        Ok(PeerClient::new(channel))
    }

    /// Member `to` (the leader) renews lease `id`; its TTL.
    ///
    /// # Errors
    /// `NotFound`: no such lease; anything else (`Unavailable`: `to` is not the leader or
    /// cannot be reached): worth asking again.
    pub async fn lease_renew(&self, to: u64, id: i64) -> Result<i64, Status> {
        let r = self
            .client(to)?
            .lease_renew(LeaseRenewRequest { id })
            .await?;
        Ok(r.into_inner().ttl)
    }

    /// Member `to` (the leader) answers lease `id`'s TimeToLive (ttl -1: no such lease).
    ///
    /// # Errors
    /// `Unavailable`: `to` is not the leader or cannot be reached (worth asking again).
    pub async fn lease_time_to_live(
        &self,
        to: u64,
        id: i64,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        let r = self
            .client(to)?
            .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
            .await?;
        Ok(r.into_inner())
    }
}

/// Asks the member serving `Peer` at `url` who it is, within `timeout`.
///
/// # Errors
/// `url` is not a URI, or the member did not answer in time.
pub async fn ask_member(url: &str, timeout: Duration) -> Result<MemberInfo, Status> {
    ask(url, timeout, |mut c| async move {
        c.member(MemberRequest {}).await.map(Response::into_inner)
    })
    .await
}

/// Connects to the member serving `Peer` at `url` and makes one call on it, all within
/// `timeout` (the one-off asks: who a member is, the cluster's members, a promotion).
async fn ask<T, F, Fut>(url: &str, timeout: Duration, call: F) -> Result<T, Status>
where
    F: FnOnce(PeerClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::invalid_argument(format!("{url}: {e}")))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let ask = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("{url}: {e}")))?;
        call(PeerClient::new(channel)).await
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| Status::deadline_exceeded(format!("{url}: no answer")))?
}

/// Completes when the server stops (never, for a service not run by [`serve_peer`]).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves `service` on `listener` until `shutdown` completes; then the open streams end
/// (`Unavailable`, the senders reconnect elsewhere or later) and the server returns.
///
/// # Errors
/// The transport failed.
pub async fn serve_peer(
    listener: TcpListener,
    mut service: PeerService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (stop_tx, stopping) = watch::channel(false);
    service.stopping = stopping;
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
}

/// How a [`GrpcTransport`] sends.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Messages queued per peer; when full, `send` drops the message (raft sends again).
    pub queue: usize,
    /// The first wait before reconnecting a broken stream; doubled up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between reconnects.
    pub max_backoff: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    /// 4,096 messages per peer, backoff from 50 ms to 1 s, 1 s to connect.
    fn default() -> Self {
        TransportConfig {
            queue: 4096,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct LinkStats {
    dropped: AtomicU64,
    reconnects: AtomicU64,
}

#[derive(Debug)]
struct Link {
    url: String,
    queue: mpsc::Sender<Vec<u8>>,
    stats: Arc<LinkStats>,
}

/// batchkv-raft's [`Transport`] over `batchkvpb.Peer`: for each peer, a bounded queue drained
/// by a tokio task into one long-lived client stream on a lazily connected channel, reconnected
/// with backoff when it breaks. [`Transport::send`] never waits: it is called from the node's
/// Ready loop (not a tokio thread), and a message that finds its queue full, or is for an
/// unknown member, is dropped and counted ([`GrpcTransport::dropped`]), as are the messages
/// still queued when a stream breaks. Dropping the transport
/// ends its tasks and streams.
#[derive(Debug)]
pub struct GrpcTransport {
    links: RwLock<HashMap<u64, Link>>,
    removal: RemovalSlot,
    unknown: AtomicU64,
    from: u64,
    runtime: tokio::runtime::Handle,
    config: TransportConfig,
}

impl GrpcTransport {
    /// The transport of member `from` to `peers` (member id, URL such as
    /// `http://127.0.0.1:2380`); its tasks run on `runtime`.
    ///
    /// # Errors
    /// A URL that is not a valid URI.
    pub fn new(
        runtime: &tokio::runtime::Handle,
        from: u64,
        peers: &[(u64, String)],
        config: &TransportConfig,
    ) -> Result<GrpcTransport, tonic::transport::Error> {
        let transport = GrpcTransport {
            links: RwLock::new(HashMap::new()),
            removal: RemovalSlot::default(),
            unknown: AtomicU64::new(0),
            from,
            runtime: runtime.clone(),
            config: config.clone(),
        };
        for (to, url) in peers {
            transport.add_peer(*to, url)?;
        }
        Ok(transport)
    }

    fn links(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Link>> {
        self.links.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts sending to member `to` at `url` (nothing if it has a link to that URL already;
    /// a link to another URL is replaced: the member's URL was updated).
    ///
    /// # Errors
    /// A URL that is not a valid URI.
    pub fn add_peer(&self, to: u64, url: &str) -> Result<(), tonic::transport::Error> {
        if to == self.from || self.links().get(&to).is_some_and(|l| l.url == url) {
            return Ok(());
        }
        let config = &self.config;
        let endpoint = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(LinkStats::default());
        self.runtime.spawn(drive(
            self.from,
            to,
            endpoint,
            rx,
            config.clone(),
            Arc::clone(&stats),
            Arc::clone(&self.removal),
        ));
        self.links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                to,
                Link {
                    url: url.to_owned(),
                    queue,
                    stats,
                },
            );
        Ok(())
    }

    /// Where to put the node's [`RemovalNotice`] once it runs: a peer refusing this member's
    /// traffic as a removed member's ([`is_removed_refusal`]) notifies it, and the node stops.
    pub fn removal_slot(&self) -> RemovalSlot {
        Arc::clone(&self.removal)
    }

    /// Messages dropped so far: queue full, queued for a stream that broke, or no such peer.
    pub fn dropped(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
            + self
                .links()
                .values()
                .map(|l| l.stats.dropped.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// Messages to member `to` dropped so far: its queue was full, or they were queued for a
    /// stream that broke.
    pub fn dropped_to(&self, to: u64) -> u64 {
        self.links()
            .get(&to)
            .map_or(0, |l| l.stats.dropped.load(Ordering::Relaxed))
    }

    /// Streams to member `to` opened again after one broke (or failed to open).
    pub fn reconnects_to(&self, to: u64) -> u64 {
        self.links()
            .get(&to)
            .map_or(0, |l| l.stats.reconnects.load(Ordering::Relaxed))
    }
}

impl Transport for GrpcTransport {
    fn send(&self, to: u64, msg: Vec<u8>) {
        match self.links().get(&to) {
            Some(link) => {
                if link.queue.try_send(msg).is_err() {
                    link.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A member added (its record, etcd's member JSON, names its peer URLs) gets a link; a
    /// member whose URL changed (MemberUpdate) gets a new one. Links are never dropped here: a
    /// member joining replays old configurations before it reaches the current one, and raft
    /// sends nothing to a member no longer in it.
    fn members_changed(&self, membership: &Membership) {
        for id in membership.voters.iter().chain(&membership.learners) {
            let Some(url) = peer_url(membership, *id) else {
                continue;
            };
            if let Err(e) = self.add_peer(*id, &url) {
                tracing::warn!(member = %format!("{id:x}"), %url, error = %e, "peer URL refused");
            }
        }
    }
}

/// One peer's sender: waits for a message, opens the stream, forwards the queue into it until
/// it breaks, then waits (backoff) and opens it again. Ends when the transport is dropped.
async fn drive(
    from: u64,
    to: u64,
    endpoint: Endpoint,
    mut queue: mpsc::Receiver<Vec<u8>>,
    config: TransportConfig,
    stats: Arc<LinkStats>,
    removal: RemovalSlot,
) {
    let channel = endpoint.connect_lazy();
    let mut backoff = config.min_backoff;
    let mut first = None;
    loop {
        let msg = match first.take() {
            Some(m) => m,
            None => match queue.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let (frames, rx) = mpsc::channel::<RaftFrame>(64);
        let mut client = PeerClient::new(channel.clone()).max_encoding_message_size(usize::MAX);
        let mut call = tokio::spawn(async move { client.send(ReceiverStream::new(rx)).await });
        let opened = Instant::now();
        let mut next = Some(msg);
        let outcome = 'stream: loop {
            if let Some(message) = next.take() {
                for frame in frames_of(from, to, message) {
                    tokio::select! {
                        sent = frames.send(frame) => if sent.is_err() { break 'stream None },
                        r = &mut call => break 'stream Some(r),
                    }
                }
            }
            tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => next = Some(m),
                    None => {
                        // The transport is gone: close the stream and let it finish.
                        drop(frames);
                        let _ = tokio::time::timeout(config.max_backoff, &mut call).await;
                        call.abort();
                        return;
                    }
                },
                r = &mut call => break Some(r),
            }
        };
        call.abort();
        match outcome {
            Some(Ok(Err(status))) if is_removed_refusal(&status) => {
                tracing::warn!(
                    from,
                    to,
                    "{MEMBER_REMOVED}: the member refuses this member's messages"
                );
                if let Some(notice) = removal.get() {
                    notice.notify();
                }
            }
            Some(Ok(Err(status))) => {
                tracing::debug!(from, to, %status, "raft peer stream broke");
            }
            Some(Ok(Ok(_))) => tracing::debug!(from, to, "raft peer stream closed by the peer"),
            Some(Err(_)) | None => tracing::debug!(from, to, "raft peer stream ended"),
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        // What was queued for the broken stream is stale by the time a new one opens: dropped
        // (raft sends again what still matters), so the next stream starts with fresh messages.
        let mut stale = 0;
        while queue.try_recv().is_ok() {
            stale += 1;
        }
        stats.dropped.fetch_add(stale, Ordering::Relaxed);
        if opened.elapsed() >= config.max_backoff {
            backoff = config.min_backoff;
        }
        // Wait before the next attempt; messages queued meanwhile wait (or are dropped when
        // the queue is full). The transport may go away while waiting.
        let wake = Instant::now() + backoff;
        backoff = (backoff * 2).min(config.max_backoff);
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            m = queue.recv() => match m {
                Some(m) => {
                    first = Some(m);
                    tokio::time::sleep_until(wake).await;
                }
                None => return,
            },
        }
    }
}
