//! The client's endpoints: one typed method per EM call the tool makes (the entry point, the
//! logon sessions, accounts, roles and scopes, and the scope rebuild), on [`Call`], which has
//! every attempt recorded with the caller's tag.

use http::Method;
use http::header::LOCATION;
use uuid::Uuid;

use super::{Auth, Client, MAX_ANSWER_BYTES, MAX_LIST_ANSWER_BYTES, Request};
use crate::em::codec;
use crate::em::{
    Account, AccountCreateSpec, AccountRole, EmError, EntityRef, EntryPoint, LogonSession,
    RebuildMode, RequestTag, Scope, ScopeItem, Task,
};

impl Client {
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
        let client = self.client;
        let method = Method::GET;
        let target = client.target("/");
        let answer = client
            .attempt(
                self.tag,
                &method,
                &target,
                Auth::None,
                None,
                MAX_ANSWER_BYTES,
            )
            .await?;
        let answer = client.check(&method, &target, answer)?;
        let request = Request::new(method, "/".into(), None);
        client.decode(&request, &answer, |c, body| c.entry_point(body))
    }
    /// `GET /logonSessions`.
    pub async fn logon_sessions(&self) -> Result<Vec<LogonSession>, EmError> {
        self.client
            .read(self.tag, "/logonSessions".into(), |c, body| {
                c.logon_sessions(body)
            })
            .await
    }
    /// `GET /security`.
    pub async fn security(&self) -> Result<(), EmError> {
        self.client
            .read(self.tag, "/security".into(), |c, body| c.security(body))
            .await
    }
    /// `GET /security/roles`.
    pub async fn roles(&self) -> Result<Vec<EntityRef>, EmError> {
        self.client
            .read(self.tag, "/security/roles".into(), |c, body| {
                c.entity_refs(body)
            })
            .await
    }
    /// `GET /security/roles/{id}`.
    pub async fn role(&self, id: Uuid) -> Result<EntityRef, EmError> {
        self.client
            .read(self.tag, format!("/security/roles/{id}"), |c, body| {
                c.entity_ref(body)
            })
            .await
    }
    /// `GET /security/accounts`, the one answer allowed [`MAX_LIST_ANSWER_BYTES`].
    pub async fn accounts(&self) -> Result<Vec<EntityRef>, EmError> {
        self.client
            .read_within(
                self.tag,
                "/security/accounts".into(),
                MAX_LIST_ANSWER_BYTES,
                |c, body| c.entity_refs(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}` (the reference form).
    pub async fn account_ref(&self, id: Uuid) -> Result<EntityRef, EmError> {
        self.client
            .read(self.tag, format!("/security/accounts/{id}"), |c, body| {
                c.entity_ref(body)
            })
            .await
    }
    /// `GET /security/accounts/{id}?format=Entity`.
    pub async fn account(&self, id: Uuid) -> Result<Account, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}?format=Entity"),
                |c, body| c.account(body),
            )
            .await
    }
    /// `POST /security/accounts`: creates an account; the new id, from `Location`, when given.
    pub async fn create_account(&self, spec: &AccountCreateSpec) -> Result<Option<Uuid>, EmError> {
        let body = self.client.codec.account_create_spec(spec);
        let answer = self
            .client
            .write(
                self.tag,
                Method::POST,
                "/security/accounts".into(),
                Some(body),
            )
            .await?;
        // EM documents no body and no Location for this POST; use the Location when it comes.
        Ok(answer
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Uuid::parse_str(codec::last_segment(l)).ok()))
    }
    /// `DELETE /security/accounts/{id}`.
    pub async fn delete_account(&self, id: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}"),
                None,
            )
            .await
            .map(|_| ())
    }
    /// `POST /security/accounts/{id}`: flips "restore all VMs". Not idempotent.
    ///
    /// Never sent twice by the client: after a 401 it logs on again so that the caller's own
    /// retry finds a fresh session, and returns the 401 (which is safe to retry, since EM did
    /// not act on it).
    pub async fn toggle_restore_all_vms(&self, id: Uuid) -> Result<(), EmError> {
        let request = Request {
            resend_after_relogon: false,
            ..Request::new(Method::POST, format!("/security/accounts/{id}"), None)
        };
        self.client.exchange(self.tag, &request).await.map(|_| ())
    }
    /// `POST /security/accounts?action=rebuildScope`.
    pub async fn rebuild_scopes(&self, mode: RebuildMode) -> Result<Task, EmError> {
        let request = Request::new(
            Method::POST,
            "/security/accounts?action=rebuildScope".into(),
            Some(self.client.codec.rebuild_spec(mode)),
        );
        let answer = self.client.exchange(self.tag, &request).await?;
        self.client
            .decode(&request, &answer, |c, body| c.task(body))
    }
    /// `GET /security/accounts/{id}/roles`.
    pub async fn account_roles(&self, id: Uuid) -> Result<Vec<AccountRole>, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/roles"),
                |c, body| c.account_roles(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}/roles/{role}`.
    pub async fn account_role(&self, id: Uuid, role: Uuid) -> Result<AccountRole, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/roles/{role}"),
                |c, body| c.account_role(body),
            )
            .await
    }
    /// `POST /security/accounts/{id}/roles` with the role's UID.
    pub async fn assign_role(&self, id: Uuid, role_uid: &str) -> Result<(), EmError> {
        let body = self.client.codec.role_assignment_spec(role_uid);
        self.client
            .write(
                self.tag,
                Method::POST,
                format!("/security/accounts/{id}/roles"),
                Some(body),
            )
            .await
            .map(|_| ())
    }
    /// `DELETE /security/accounts/{id}/roles/{role}`.
    pub async fn remove_role(&self, id: Uuid, role: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}/roles/{role}"),
                None,
            )
            .await
            .map(|_| ())
    }
    /// `GET /security/accounts/{id}/scopes`.
    pub async fn account_scopes(&self, id: Uuid) -> Result<Vec<Scope>, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/scopes"),
                |c, body| c.scopes(body),
            )
            .await
    }
    /// `GET /security/accounts/{id}/scopes/{scope}`.
    pub async fn account_scope(&self, id: Uuid, scope: Uuid) -> Result<Scope, EmError> {
        self.client
            .read(
                self.tag,
                format!("/security/accounts/{id}/scopes/{scope}"),
                |c, body| c.scope(body),
            )
            .await
    }
    /// `POST /security/accounts/{id}/scopes` (201 or 202 is success).
    pub async fn add_scopes(&self, id: Uuid, items: &[ScopeItem]) -> Result<(), EmError> {
        let body = self.client.codec.scope_create_spec(items);
        self.client
            .write(
                self.tag,
                Method::POST,
                format!("/security/accounts/{id}/scopes"),
                Some(body),
            )
            .await
            .map(|_| ())
    }
    /// `DELETE /security/accounts/{id}/scopes/{scope}`.
    pub async fn remove_scope(&self, id: Uuid, scope: Uuid) -> Result<(), EmError> {
        self.client
            .write(
                self.tag,
                Method::DELETE,
                format!("/security/accounts/{id}/scopes/{scope}"),
                None,
            )
            .await
            .map(|_| ())
    }
}
