//! The `/security` endpoints, which only a Portal Administrator may use: accounts, the roles and
//! scopes each holds, and the role catalogue.

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Admin, Posted, created_at, query_get, query_is};
use crate::emulator::body;
use crate::emulator::repr;
use crate::emulator::state::{ROLES, role_by_id, scope_not_found};
use crate::emulator::wire::{ApiError, Doc};

pub(super) async fn security(Admin(a): Admin) -> Response {
    a.ctx.doc(StatusCode::OK, &repr::security(&a.ctx.base))
}

// --- accounts ----------------------------------------------------------------------------

pub(super) async fn list_accounts(Admin(a): Admin) -> Response {
    let doc = repr::account_refs(&a.ctx.base, a.ctx.shared.lock().accounts.iter());
    a.ctx.doc(StatusCode::OK, &doc)
}

/// `POST /security/accounts`: creates an account, or with `?action=rebuildScope` starts a
/// scope rebuild.
pub(super) async fn post_accounts(
    Admin(a): Admin,
    RawQuery(query): RawQuery,
    posted: Posted,
) -> Response {
    let ctx = &a.ctx;
    ctx.finish((|| match query_get(&query, "action") {
        Some(action) if action.eq_ignore_ascii_case("rebuildScope") => {
            let mode = body::rebuild_spec(&posted.decode()?)?;
            let task = ctx.shared.lock().rebuild(mode, &a.caller, &ctx.origin);
            Ok(ctx.doc(StatusCode::CREATED, &repr::task(&ctx.base, &task)))
        }
        Some(action) => Err(ApiError::bad_request(format!("unknown action {action}"))),
        None => {
            let spec = body::account_spec(&posted.decode()?)?;
            let id = ctx.shared.lock().create_account(&spec, &ctx.origin)?;
            Ok(created_at(format!("{}/security/accounts/{id}", ctx.base)))
        }
    })())
}

pub(super) async fn get_account(
    Admin(a): Admin,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    a.about(&id, "Account", |ctx, id| {
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let doc = if query_is(&query, "format", "Entity") {
            repr::account_entity(&ctx.base, account)
        } else {
            Doc::One(repr::account_ref(&ctx.base, account, "EntityRef"))
        };
        Ok(ctx.doc(StatusCode::OK, &doc))
    })
}

/// `POST /security/accounts/{id}`: flips "restore all VMs"; any body is ignored.
pub(super) async fn toggle(Admin(a): Admin, Path(id): Path<String>) -> Response {
    a.about(&id, "Account", |ctx, id| {
        ctx.shared.lock().toggle_restore_all_vms(id, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

pub(super) async fn delete_account(Admin(a): Admin, Path(id): Path<String>) -> Response {
    a.about(&id, "Account", |ctx, id| {
        ctx.shared.lock().delete_account(id, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// --- account roles -----------------------------------------------------------------------

pub(super) async fn account_roles(Admin(a): Admin, Path(id): Path<String>) -> Response {
    a.about(&id, "Account", |ctx, id| {
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        let held: Vec<_> = account
            .roles
            .iter()
            .filter_map(|r| role_by_id(*r))
            .collect();
        Ok(ctx.doc(
            StatusCode::OK,
            &repr::account_roles(&ctx.base, id, held.iter()),
        ))
    })
}

pub(super) async fn assign_role(
    Admin(a): Admin,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    a.about(&id, "Account", |ctx, id| {
        let uid = body::role_spec(&posted.decode()?)?;
        ctx.shared.lock().assign_role(id, &uid, &ctx.origin)?;
        let role = body::role_uid(&uid)?;
        Ok(created_at(format!(
            "{}/security/accounts/{id}/roles/{role}",
            ctx.base
        )))
    })
}

pub(super) async fn account_role(Admin(a): Admin, Path(ids): Path<(String, String)>) -> Response {
    a.about_item(&ids, "Role", |ctx, st, id, role_id| {
        let account = st.account(id)?;
        let role = role_by_id(role_id)
            .filter(|r| account.roles.contains(&r.id))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Role {role_id} is not assigned to account {}",
                    account.name
                ))
            })?;
        Ok(ctx.doc(
            StatusCode::OK,
            &Doc::One(repr::account_role(&ctx.base, id, &role, true)),
        ))
    })
}

pub(super) async fn remove_role(Admin(a): Admin, Path(ids): Path<(String, String)>) -> Response {
    a.about_item(&ids, "Role", |ctx, st, id, role| {
        st.remove_role(id, role, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// --- account scopes ----------------------------------------------------------------------

pub(super) async fn account_scopes(Admin(a): Admin, Path(id): Path<String>) -> Response {
    a.about(&id, "Account", |ctx, id| {
        let st = ctx.shared.lock();
        let account = st.account(id)?;
        Ok(ctx.doc(
            StatusCode::OK,
            &repr::scopes(&ctx.base, id, account.scopes.iter()),
        ))
    })
}

pub(super) async fn add_scopes(
    Admin(a): Admin,
    Path(id): Path<String>,
    posted: Posted,
) -> Response {
    a.about(&id, "Account", |ctx, id| {
        let items = body::scope_spec(&posted.decode()?)?;
        let mut st = ctx.shared.lock();
        st.add_scopes(id, &items, &ctx.origin)?;
        Ok(st.options.scope_post_status.into_response())
    })
}

pub(super) async fn account_scope(Admin(a): Admin, Path(ids): Path<(String, String)>) -> Response {
    a.about_item(&ids, "Scope", |ctx, st, id, scope_id| {
        let scope = st
            .account(id)?
            .scopes
            .iter()
            .find(|s| s.id == scope_id)
            .ok_or_else(|| scope_not_found(scope_id))?;
        Ok(ctx.doc(StatusCode::OK, &Doc::One(repr::scope(&ctx.base, id, scope))))
    })
}

pub(super) async fn remove_scope(Admin(a): Admin, Path(ids): Path<(String, String)>) -> Response {
    a.about_item(&ids, "Scope", |ctx, st, id, scope| {
        st.remove_scope(id, scope, &ctx.origin)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

// --- roles -------------------------------------------------------------------------------

pub(super) async fn roles(Admin(a): Admin) -> Response {
    a.ctx
        .doc(StatusCode::OK, &repr::role_refs(&a.ctx.base, ROLES.iter()))
}

pub(super) async fn role(
    Admin(a): Admin,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    a.about(&id, "Role", |ctx, role_id| {
        let role = role_by_id(role_id)
            .ok_or_else(|| ApiError::not_found(format!("Role {id} was not found")))?;
        let doc = if query_is(&query, "format", "Entity") {
            repr::role_entity(&ctx.base, &role)
        } else {
            Doc::One(repr::role_ref(&ctx.base, &role, "EntityRef"))
        };
        Ok(ctx.doc(StatusCode::OK, &doc))
    })
}
