//! Cluster: MemberList, MemberAdd, MemberRemove, MemberUpdate, MemberPromote.
//!
//! One node: MemberList names this server; the changes are not served. Replicated: the
//! members are raft's configuration as this member applied it (voters and learners, each
//! with its record, etcd's member JSON, kept with raft's conf state); a member's name and
//! client URLs are asked of it over the peer service (`Peer.Member`) and kept once known, so
//! a member that has not started yet is listed without them, as etcd lists a member that has
//! not published its attributes. Changes go through raft's configuration changes
//! (`Store::propose_conf_change`), with etcd's checks and texts (`rpctypes`). raft-rs has no
//! `UpdateNode` change type (etcd's MemberUpdate is a `ConfChangeUpdateNode`): MemberUpdate
//! proposes the member's current role again (`AddNode` for a voter, `AddLearnerNode` for a
//! learner), which raft applies as no change to the configuration, with the new record as its
//! context; every member applies it to its member records and its transport.

use std::time::Duration;

use batchkv::{ConfChangeKind, Membership, RaftError};
use tonic::{Request, Response, Status};

use super::Etcd;
use crate::error::unserved;
use crate::membership::{MemberRecord, member_id_at, valid_peer_url};
use crate::pb::batchkvpb::MemberInfo;
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};

/// How long a follower waits for the leader to promote a learner, and then to apply it.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long MemberList waits for a member to say who it is.
const MEMBER_ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// etcd's `rpctypes` errors of the Cluster service.
const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
const PEER_URL_EXISTS: &str = "etcdserver: Peer URLs already exists";
const MEMBER_EXISTS: &str = "etcdserver: member ID already exist";
const NOT_ENOUGH_STARTED: &str =
    "etcdserver: re-configuration failed due to not enough started members";
const BAD_URLS: &str = "etcdserver: given member URLs are invalid";
const NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
/// etcd 3.4 allows one learner at a time (`maxLearners`).
const MAX_LEARNERS: usize = 1;

/// etcd's gRPC status for a failed configuration change.
pub(crate) fn conf_status(e: RaftError) -> Status {
    match e {
        RaftError::NotLeader { leader: None } => Status::unavailable("etcdserver: no leader"),
        RaftError::NotLeader { leader: Some(_) } => Status::unavailable("etcdserver: not leader"),
        RaftError::LearnerNotReady => Status::failed_precondition(e.to_string()),
        RaftError::Ambiguous | RaftError::Timeout | RaftError::Stopped => {
            Status::unavailable(e.to_string())
        }
        RaftError::ConfChangeInProgress => Status::unavailable(e.to_string()),
        other => Status::internal(format!("etcdserver: {other}")),
    }
}

impl Etcd {
    /// The membership, or `Unimplemented` naming `rpc` for a single node.
    fn membership(&self, rpc: &str) -> Result<Membership, Status> {
        if self.ctx.cluster.is_none() {
            return Err(unserved(rpc));
        }
        self.ctx
            .store
            .membership()
            .ok_or_else(|| Status::unavailable(crate::error::STOPPED))
    }

    /// Asks every member not yet known who it is (`Peer.Member`), concurrently.
    async fn ask_unknown(&self, m: &Membership) {
        let asks: Vec<_> = m
            .voters
            .iter()
            .chain(&m.learners)
            .filter(|id| **id != self.ctx.member_id && !self.ctx.known_member(**id))
            .filter_map(|id| {
                MemberRecord::from_bytes(m.records.get(id)?)?
                    .peer_urls
                    .into_iter()
                    .next()
            })
            .map(|url| {
                tokio::spawn(async move { crate::peer::ask_member(&url, MEMBER_ASK_TIMEOUT).await })
            })
            .collect();
        for ask in asks {
            if let Ok(Ok(info)) = ask.await {
                self.ctx.remember_member(info);
            }
        }
    }

    /// Whether member `id` has started (said who it is; this member has).
    fn started(&self, id: u64) -> bool {
        id == self.ctx.member_id || self.ctx.known_member(id)
    }

    /// Every member as etcd lists them, sorted by id (etcd's order).
    fn members(&self, m: &Membership) -> Vec<pb::Member> {
        let mut ids: Vec<(u64, bool)> = m
            .voters
            .iter()
            .map(|id| (*id, false))
            .chain(m.learners.iter().map(|id| (*id, true)))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|(id, is_learner)| {
                let record = m
                    .records
                    .get(&id)
                    .and_then(|r| MemberRecord::from_bytes(r))
                    .unwrap_or_default();
                let (name, client_urls) = if id == self.ctx.member_id {
                    (self.ctx.name.clone(), self.ctx.client_urls.clone())
                } else {
                    match self.ctx.member_info(id) {
                        Some(MemberInfo {
                            name, client_urls, ..
                        }) => (name, client_urls),
                        None => (record.name, Vec::new()),
                    }
                };
                pb::Member {
                    id,
                    name,
                    peer_ur_ls: record.peer_urls,
                    client_ur_ls: client_urls,
                    is_learner,
                }
            })
            .collect()
    }

    /// etcd's `IsReadyToAddVotingMember` / `IsReadyToRemoveVotingMember` with the strict
    /// reconfiguration check on (etcd's default): after the change a quorum of the voters
    /// must have started.
    fn check_started(&self, voters: &[u64], started: usize) -> Result<(), Status> {
        let n = voters.len();
        // Adding a second member to a one-member cluster (restoring a cluster from it).
        if started == 1 && n == 2 {
            return Ok(());
        }
        if started < n / 2 + 1 {
            // etcd 3.4 answers it with code Unknown (it is not in rpctypes' table).
            return Err(Status::unknown(NOT_ENOUGH_STARTED));
        }
        Ok(())
    }

    /// Waits until this member applied `id`'s promotion.
    async fn await_voter(&self, id: u64) -> Result<Membership, Status> {
        let deadline = tokio::time::Instant::now() + PROMOTE_TIMEOUT;
        loop {
            let m = self.membership("Cluster/MemberPromote")?;
            if m.voters.contains(&id) {
                return Ok(m);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Status::unavailable("etcdserver: request timed out"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn change(
        &self,
        kind: ConfChangeKind,
        id: u64,
        record: Vec<u8>,
    ) -> Result<Membership, Status> {
        crate::blocking::run(&self.ctx.store, move |s| {
            s.propose_conf_change(kind, id, record)
        })
        .await?
        .map_err(conf_status)
    }
}

#[tonic::async_trait]
impl Cluster for Etcd {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let m = self.membership("Cluster/MemberAdd")?;
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() || !req.peer_ur_ls.iter().all(|u| valid_peer_url(u)) {
            return Err(Status::invalid_argument(BAD_URLS));
        }
        let taken = m
            .records
            .values()
            .filter_map(|r| MemberRecord::from_bytes(r));
        for r in taken {
            if r.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u)) {
                return Err(Status::failed_precondition(PEER_URL_EXISTS));
            }
        }
        if req.is_learner {
            if m.learners.len() >= MAX_LEARNERS {
                return Err(Status::failed_precondition(TOO_MANY_LEARNERS));
            }
        } else {
            self.ask_unknown(&m).await;
            let started = m.voters.iter().filter(|id| self.started(**id)).count();
            let mut after = m.voters.clone();
            after.push(0);
            self.check_started(&after, started)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let id = member_id_at(&req.peer_ur_ls, &self.ctx.cluster_token, Some(now));
        if m.voters.contains(&id) || m.learners.contains(&id) {
            return Err(Status::failed_precondition(MEMBER_EXISTS));
        }
        let record = MemberRecord {
            id,
            peer_urls: req.peer_ur_ls.clone(),
            name: String::new(),
            is_learner: req.is_learner,
        };
        let kind = if req.is_learner {
            ConfChangeKind::AddLearner
        } else {
            ConfChangeKind::AddVoter
        };
        let after = self.change(kind, id, record.to_bytes()).await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.ctx.header(0),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: req.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: self.members(&after),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let m = self.membership("Cluster/MemberRemove")?;
        let id = request.into_inner().id;
        let is_voter = m.voters.contains(&id);
        if !is_voter && !m.learners.contains(&id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        // Removing a learner never endangers a quorum (etcd checks voters only).
        if is_voter {
            self.ask_unknown(&m).await;
            let after: Vec<u64> = m.voters.iter().copied().filter(|v| *v != id).collect();
            let started = after.iter().filter(|v| self.started(**v)).count();
            self.check_started(&after, started)?;
        }
        let after = self.change(ConfChangeKind::Remove, id, Vec::new()).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.ctx.header(0),
            members: self.members(&after),
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let m = self.membership("Cluster/MemberUpdate")?;
        let req = request.into_inner();
        let is_learner = m.learners.contains(&req.id);
        if !is_learner && !m.voters.contains(&req.id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        if req.peer_ur_ls.is_empty() || !req.peer_ur_ls.iter().all(|u| valid_peer_url(u)) {
            return Err(Status::invalid_argument(BAD_URLS));
        }
        // Another member's URLs (the member's own may stay).
        let taken = m
            .records
            .iter()
            .filter(|(id, _)| **id != req.id)
            .filter_map(|(_, r)| MemberRecord::from_bytes(r));
        for r in taken {
            if r.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u)) {
                return Err(Status::failed_precondition(PEER_URL_EXISTS));
            }
        }
        let mut record = m
            .records
            .get(&req.id)
            .and_then(|r| MemberRecord::from_bytes(r))
            .unwrap_or_default();
        record.id = req.id;
        record.peer_urls = req.peer_ur_ls;
        record.is_learner = is_learner;
        let kind = if is_learner {
            ConfChangeKind::AddLearner
        } else {
            ConfChangeKind::AddVoter
        };
        let after = self.change(kind, req.id, record.to_bytes()).await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.ctx.header(0),
            members: self.members(&after),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        // etcd's cluster server fills the header without a revision (cluster id, member id,
        // raft term only).
        if self.ctx.cluster.is_none() {
            return Ok(Response::new(pb::MemberListResponse {
                header: self.ctx.header(0),
                members: vec![pb::Member {
                    id: self.ctx.member_id,
                    name: self.ctx.name.clone(),
                    peer_ur_ls: Vec::new(),
                    client_ur_ls: self.ctx.client_urls.clone(),
                    is_learner: false,
                }],
            }));
        }
        let m = self.membership("Cluster/MemberList")?;
        self.ask_unknown(&m).await;
        Ok(Response::new(pb::MemberListResponse {
            header: self.ctx.header(0),
            members: self.members(&m),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let m = self.membership("Cluster/MemberPromote")?;
        let id = request.into_inner().id;
        if m.voters.contains(&id) {
            return Err(Status::failed_precondition(NOT_LEARNER));
        }
        if !m.learners.contains(&id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        let record = crate::membership::promoted_record(&m.records, id);
        let proposed = crate::blocking::run(&self.ctx.store, move |s| {
            s.propose_conf_change(ConfChangeKind::AddVoter, id, record)
        })
        .await?;
        let after = match proposed {
            // Only the leader knows how far the learner is: a follower asks it (etcd
            // forwards the promotion to the leader too), then waits to apply the change.
            Err(RaftError::NotLeader {
                leader: Some(leader),
            }) => {
                let url = crate::peer::peer_url(&m, leader)
                    .ok_or_else(|| Status::unavailable("etcdserver: not leader"))?;
                crate::peer::ask_promote(&url, id, PROMOTE_TIMEOUT).await?;
                self.await_voter(id).await?
            }
            other => other.map_err(conf_status)?,
        };
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.ctx.header(0),
            members: self.members(&after),
        }))
    }
}
