//! Cluster: MemberList (one member: this server). Changing membership is not served.

use tonic::{Request, Response, Status};

use super::Etcd;
use crate::MEMBER_ID;
use crate::error::unserved;
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};

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
        Ok(Response::new(pb::MemberListResponse {
            header: self.ctx.header(0),
            members: vec![pb::Member {
                id: MEMBER_ID,
                name: self.ctx.name.clone(),
                peer_ur_ls: Vec::new(),
                client_ur_ls: self.ctx.client_urls.clone(),
                is_learner: false,
            }],
        }))
    }

    async fn member_promote(
        &self,
        _request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(unserved("Cluster/MemberPromote"))
    }
}
