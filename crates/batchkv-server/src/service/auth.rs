//! Auth: not served (batchkv has no users or roles yet); every RPC answers `Unimplemented`
//! naming itself.

use tonic::{Request, Response, Status};

use super::Etcd;
use crate::error::unserved;
use crate::pb::etcdserverpb::{self as pb, auth_server::Auth};

macro_rules! unserved_auth {
    ($($method:ident($req:ident) -> $resp:ident = $name:literal;)*) => {
        #[tonic::async_trait]
        impl Auth for Etcd {
            $(
                async fn $method(
                    &self,
                    _request: Request<pb::$req>,
                ) -> Result<Response<pb::$resp>, Status> {
                    Err(unserved($name))
                }
            )*
        }
    };
}

unserved_auth! {
    auth_enable(AuthEnableRequest) -> AuthEnableResponse = "Auth/AuthEnable";
    auth_disable(AuthDisableRequest) -> AuthDisableResponse = "Auth/AuthDisable";
    authenticate(AuthenticateRequest) -> AuthenticateResponse = "Auth/Authenticate";
    user_add(AuthUserAddRequest) -> AuthUserAddResponse = "Auth/UserAdd";
    user_get(AuthUserGetRequest) -> AuthUserGetResponse = "Auth/UserGet";
    user_list(AuthUserListRequest) -> AuthUserListResponse = "Auth/UserList";
    user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse = "Auth/UserDelete";
    user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse
        = "Auth/UserChangePassword";
    user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse = "Auth/UserGrantRole";
    user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse
        = "Auth/UserRevokeRole";
    role_add(AuthRoleAddRequest) -> AuthRoleAddResponse = "Auth/RoleAdd";
    role_get(AuthRoleGetRequest) -> AuthRoleGetResponse = "Auth/RoleGet";
    role_list(AuthRoleListRequest) -> AuthRoleListResponse = "Auth/RoleList";
    role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse = "Auth/RoleDelete";
    role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse
        = "Auth/RoleGrantPermission";
    role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse
        = "Auth/RoleRevokePermission";
}
