//! The HTTP client: one session shared by all callers, single-flight re-logon on 401, and one
//! typed method per endpoint.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Account, AccountCreateSpec, AccountRole, ClientConfig, EmError, EntityRef, EntryPoint, LogonSession,
    RebuildMode, RequestObserver, RequestTag, Scope, ScopeItem, Task,
};

/// An EM client. Cheap to share behind an `Arc`; all callers share one session.
pub struct Client {
    config: ClientConfig,
    observer: Arc<dyn RequestObserver>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base_url", &self.config.base_url.as_str()).finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client (TLS trust, timeouts). Does not connect.
    pub fn new(config: ClientConfig, observer: Arc<dyn RequestObserver>) -> Result<Client, EmError> {
        let _ = (&config, &observer);
        todo!()
    }

    /// The API base URL.
    pub fn base_url(&self) -> &url::Url {
        &self.config.base_url
    }

    /// Logs on (or on again), replacing the session.
    pub async fn logon(&self) -> Result<LogonSession, EmError> {
        todo!()
    }

    /// Logs out, if logged on.
    pub async fn logout(&self) -> Result<(), EmError> {
        todo!()
    }

    /// The endpoint methods, with `tag` recorded on every attempt they make.
    pub fn call(&self, tag: RequestTag) -> Call<'_> {
        Call { client: self, tag }
    }
}

/// The endpoint methods of one client, tagged for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    client: &'a Client,
    tag: RequestTag,
}

impl Call<'_> {
    /// `GET /api/` (no logon needed).
    pub async fn entry_point(&self) -> Result<EntryPoint, EmError> {
        let _ = (self.client, self.tag);
        todo!()
    }
    /// `GET /logonSessions`.
    pub async fn logon_sessions(&self) -> Result<Vec<LogonSession>, EmError> {
        todo!()
    }
    /// `GET /security`.
    pub async fn security(&self) -> Result<(), EmError> {
        todo!()
    }
    /// `GET /security/roles`.
    pub async fn roles(&self) -> Result<Vec<EntityRef>, EmError> {
        todo!()
    }
    /// `GET /security/roles/{id}`.
    pub async fn role(&self, id: Uuid) -> Result<EntityRef, EmError> {
        let _ = id;
        todo!()
    }
    /// `GET /security/accounts`.
    pub async fn accounts(&self) -> Result<Vec<EntityRef>, EmError> {
        todo!()
    }
    /// `GET /security/accounts/{id}` (the reference form).
    pub async fn account_ref(&self, id: Uuid) -> Result<EntityRef, EmError> {
        let _ = id;
        todo!()
    }
    /// `GET /security/accounts/{id}?format=Entity`.
    pub async fn account(&self, id: Uuid) -> Result<Account, EmError> {
        let _ = id;
        todo!()
    }
    /// `POST /security/accounts`: creates an account; the new id, from `Location`, when given.
    pub async fn create_account(&self, spec: &AccountCreateSpec) -> Result<Option<Uuid>, EmError> {
        let _ = spec;
        todo!()
    }
    /// `DELETE /security/accounts/{id}`.
    pub async fn delete_account(&self, id: Uuid) -> Result<(), EmError> {
        let _ = id;
        todo!()
    }
    /// `POST /security/accounts/{id}`: flips "restore all VMs". Not idempotent.
    pub async fn toggle_restore_all_vms(&self, id: Uuid) -> Result<(), EmError> {
        let _ = id;
        todo!()
    }
    /// `POST /security/accounts?action=rebuildScope`.
    pub async fn rebuild_scopes(&self, mode: RebuildMode) -> Result<Task, EmError> {
        let _ = mode;
        todo!()
    }
    /// `GET /security/accounts/{id}/roles`.
    pub async fn account_roles(&self, id: Uuid) -> Result<Vec<AccountRole>, EmError> {
        let _ = id;
        todo!()
    }
    /// `GET /security/accounts/{id}/roles/{role}`.
    pub async fn account_role(&self, id: Uuid, role: Uuid) -> Result<AccountRole, EmError> {
        let _ = (id, role);
        todo!()
    }
    /// `POST /security/accounts/{id}/roles` with the role's UID.
    pub async fn assign_role(&self, id: Uuid, role_uid: &str) -> Result<(), EmError> {
        let _ = (id, role_uid);
        todo!()
    }
    /// `DELETE /security/accounts/{id}/roles/{role}`.
    pub async fn remove_role(&self, id: Uuid, role: Uuid) -> Result<(), EmError> {
        let _ = (id, role);
        todo!()
    }
    /// `GET /security/accounts/{id}/scopes`.
    pub async fn account_scopes(&self, id: Uuid) -> Result<Vec<Scope>, EmError> {
        let _ = id;
        todo!()
    }
    /// `GET /security/accounts/{id}/scopes/{scope}`.
    pub async fn account_scope(&self, id: Uuid, scope: Uuid) -> Result<Scope, EmError> {
        let _ = (id, scope);
        todo!()
    }
    /// `POST /security/accounts/{id}/scopes` (201 or 202 is success).
    pub async fn add_scopes(&self, id: Uuid, items: &[ScopeItem]) -> Result<(), EmError> {
        let _ = (id, items);
        todo!()
    }
    /// `DELETE /security/accounts/{id}/scopes/{scope}`.
    pub async fn remove_scope(&self, id: Uuid, scope: Uuid) -> Result<(), EmError> {
        let _ = (id, scope);
        todo!()
    }
}
