//! Cluster: MemberList (one node: this server; replicated: the members of
//! `--initial-cluster`, each one's name and client URLs asked of it over the peer service and
//! kept once known; a member that has not answered yet is listed without them, as etcd lists
//! a member that has not published its attributes). Changing membership is not served.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::Etcd;
use crate::error::unserved;
use crate::pb::batchkvpb::MemberInfo;
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};

/// How long MemberList waits for a member to say who it is.
const MEMBER_ASK_TIMEOUT: Duration = Duration::from_millis(500);

#[tonic::async_trait]
impl Cluster for Etcd {
    async fn member_add(
        &self,
        _request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(unserved("Cluster/MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(unserved("Cluster/MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(unserved("Cluster/MemberUpdate"))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        // etcd's cluster server fills the header without a revision (cluster id, member id,
        // raft term only).
        let Some(cluster) = &self.ctx.cluster else {
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
        };
        let asks: Vec<_> = cluster
            .members
            .iter()
            .filter(|m| m.id != self.ctx.member_id && !self.ctx.known_member(m.id))
            .map(|m| {
                let url = m.peer_urls[0].clone();
                tokio::spawn(async move { crate::peer::ask_member(&url, MEMBER_ASK_TIMEOUT).await })
            })
            .collect();
        for ask in asks {
            if let Ok(Ok(info)) = ask.await {
                self.ctx.remember_member(info);
            }
        }
        let members = cluster
            .members
            .iter()
            .map(|m| {
                let (name, client_urls) = if m.id == self.ctx.member_id {
                    (self.ctx.name.clone(), self.ctx.client_urls.clone())
                } else {
                    let info: MemberInfo = self.ctx.member_info(m.id).unwrap_or_default();
                    (info.name, info.client_urls)
                };
                pb::Member {
                    id: m.id,
                    name,
                    peer_ur_ls: m.peer_urls.clone(),
                    client_ur_ls: client_urls,
                    is_learner: false,
                }
            })
            .collect();
        Ok(Response::new(pb::MemberListResponse {
            header: self.ctx.header(0),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(unserved("Cluster/MemberPromote"))
    }
}
