//! Restore scopes: their data, adding them (all or none, never a ref the account already
//! has) and removing them, and the scope rebuild with the tasks it leaves behind.

use uuid::Uuid;

use super::sessions::Caller;
use super::{Origin, State};
use crate::emulator::Effect;
use crate::emulator::body::{ObjRef, RebuildMode, ScopeItem, parse_obj_ref};
use crate::emulator::wire::ApiError;

/// Whether a scope has been taken into account by a scope rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeState {
    /// Created, not yet rebuilt.
    Unprocessed,
    /// Rebuilt.
    Processed,
}

impl ScopeState {
    /// EM's spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ScopeState::Unprocessed => "Unprocessed",
            ScopeState::Processed => "Processed",
        }
    }
}

/// A restore scope of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Its own GUID.
    pub id: Uuid,
    /// The object's name (`ObjectName` at creation).
    pub name: String,
    /// The ref it was created from.
    pub obj_ref: String,
    /// The ref's parts.
    pub parsed: ObjRef,
    /// Rebuild state.
    pub state: ScopeState,
}

impl Scope {
    /// A scope for `obj_ref`, which must parse.
    pub(crate) fn new(
        id: Uuid,
        obj_ref: &str,
        name: &str,
        state: ScopeState,
    ) -> Result<Scope, String> {
        Ok(Scope {
            id,
            name: name.trim().to_owned(),
            obj_ref: obj_ref.trim().to_owned(),
            parsed: parse_obj_ref(obj_ref)?,
            state,
        })
    }
}

/// A finished scope-rebuild task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskRecord {
    /// `task-<n>`.
    pub id: String,
}

impl State {
    /// Creates one scope per item, each with its own GUID, all or none.
    pub(crate) fn add_scopes(
        &mut self,
        id: Uuid,
        items: &[ScopeItem],
        origin: &Origin,
    ) -> Result<Vec<Uuid>, ApiError> {
        let account = self.account_mut(id)?;
        let scopes = new_scopes(&account.scopes, items)?;
        let added: Vec<(Uuid, String)> = scopes.iter().map(|s| (s.id, s.obj_ref.clone())).collect();
        account.scopes.extend(scopes);
        for (scope_id, obj_ref) in &added {
            self.journal(
                origin,
                Some(id),
                Effect::ScopeAdded {
                    scope_id: *scope_id,
                    obj_ref: obj_ref.clone(),
                },
            );
        }
        Ok(added.into_iter().map(|(s, _)| s).collect())
    }

    /// Removes a scope.
    pub(crate) fn remove_scope(
        &mut self,
        id: Uuid,
        scope_id: Uuid,
        origin: &Origin,
    ) -> Result<(), ApiError> {
        let account = self.account_mut(id)?;
        let at = account
            .scopes
            .iter()
            .position(|s| s.id == scope_id)
            .ok_or_else(|| scope_not_found(scope_id))?;
        account.scopes.remove(at);
        self.journal(origin, Some(id), Effect::ScopeRemoved { scope_id });
        Ok(())
    }

    /// Runs a scope rebuild at once and records its task; returns the task.
    pub(crate) fn rebuild(
        &mut self,
        mode: RebuildMode,
        caller: &Caller,
        origin: &Origin,
    ) -> TaskRecord {
        let mut processed = 0u64;
        for account in &mut self.accounts {
            if mode == RebuildMode::ForCurrentUser
                && !account.name.eq_ignore_ascii_case(&caller.user)
            {
                continue;
            }
            for scope in &mut account.scopes {
                if scope.state == ScopeState::Unprocessed {
                    processed += 1;
                }
                scope.state = ScopeState::Processed;
            }
        }
        let task = TaskRecord {
            id: format!("task-{}", self.tasks.len() + 1),
        };
        self.tasks.push(task.clone());
        self.journal(origin, None, Effect::ScopesRebuilt { processed });
        task
    }

    /// A finished task.
    pub(crate) fn task(&self, id: &str) -> Result<&TaskRecord, ApiError> {
        self.tasks
            .iter()
            .find(|t| t.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| ApiError::not_found(format!("Task {id} was not found")))
    }
}

/// 404 for a scope the account does not have.
pub(crate) fn scope_not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("Scope {id} was not found"))
}

/// New `Unprocessed` scopes for `items`, refusing malformed refs, empty names, and refs the
/// account (or an earlier item) already covers.
pub(super) fn new_scopes(existing: &[Scope], items: &[ScopeItem]) -> Result<Vec<Scope>, ApiError> {
    let mut out: Vec<Scope> = Vec::new();
    for item in items {
        if item.name.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "ObjectName is required for {}",
                item.obj_ref
            )));
        }
        let scope = Scope::new(
            Uuid::new_v4(),
            &item.obj_ref,
            &item.name,
            ScopeState::Unprocessed,
        )
        .map_err(ApiError::bad_request)?;
        if existing
            .iter()
            .chain(out.iter())
            .any(|s| s.obj_ref.eq_ignore_ascii_case(&scope.obj_ref))
        {
            return Err(ApiError::bad_request(format!(
                "The account already has a restore scope for {}",
                scope.obj_ref
            )));
        }
        out.push(scope);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{origin, state};
    use super::*;
    use crate::emulator::Faults;

    #[test]
    fn scopes_are_added_all_or_none_and_rebuilt() {
        let mut st = state(Faults::default());
        let id = Uuid::from_u128(1);
        let item = |r: &str| ScopeItem {
            obj_ref: r.into(),
            name: "n".into(),
        };
        let bad = st.add_scopes(id, &[item("urn:VMware:Vm:r.vm-1"), item("nope")], &origin());
        assert_eq!(bad.unwrap_err().status, 400);
        assert!(st.accounts[0].scopes.is_empty());
        let added = st
            .add_scopes(
                id,
                &[item("urn:VMware:Vm:r.vm-1"), item("urn:VMware:Vm:r.vm-2")],
                &origin(),
            )
            .unwrap();
        assert_eq!(added.len(), 2);
        assert_ne!(added[0], added[1]);
        assert_eq!(
            st.add_scopes(id, &[item("urn:VMware:Vm:r.vm-1")], &origin())
                .unwrap_err()
                .status,
            400
        );
        let caller = Caller {
            session_id: Uuid::nil(),
            user: "admin".into(),
            admin: true,
        };
        st.rebuild(RebuildMode::ForCurrentUser, &caller, &origin());
        assert_eq!(st.accounts[0].scopes[0].state, ScopeState::Unprocessed);
        let task = st.rebuild(RebuildMode::Unprocessed, &caller, &origin());
        assert_eq!(task.id, "task-2");
        assert!(
            st.accounts[0]
                .scopes
                .iter()
                .all(|s| s.state == ScopeState::Processed)
        );
        assert_eq!(
            st.journal.last().unwrap().effect,
            Effect::ScopesRebuilt { processed: 2 }
        );
        st.remove_scope(id, added[0], &origin()).unwrap();
        assert_eq!(
            st.remove_scope(id, added[0], &origin()).unwrap_err().status,
            404
        );
    }
}
