//! Prior states stored once per account and run: the rows of one account in a run each record the
//! account's state just before them, and those states differ only by what the rows before
//! changed. So the first is stored whole in `prior_states`, and each later one as a JSON merge
//! patch of the top-level fields that changed; the `change_log` view applies the patch
//! (`json_patch`) and shows the state as it was recorded, byte for byte.
//!
//! States are not looked up by content across accounts or runs: no two accounts share a state
//! (it holds the account's id), and an index of their hashes would cost a page written at a
//! random place for every state stored, more than a state repeated across runs saves.
//!
//! A patch is written only when applying it gives back exactly the recorded text: the same
//! fields in the same order, and no changed field whose new value is `null` (which a merge
//! patch reads as "remove") or an object (which it merges into the old one instead of replacing
//! it). Any other state is stored whole.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::audit::canon::content_fields;
use crate::audit::chain::{ChainHead, PRIOR_STATES};

/// The most accounts whose first state is kept in memory; beyond it the memory is cleared, and
/// an account seen again starts from a whole state (still stored once, by its hash).
const MAX_BASES: usize = 8192;

/// How a row's prior state is recorded.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::audit) struct PriorState {
    /// The `prior_states` record it starts from.
    pub(in crate::audit) state: i64,
    /// The merge patch to apply to it, if any.
    pub(in crate::audit) patch: Option<String>,
}

/// A state stored whole, that later states of the same account are patches of.
struct Base {
    seq: i64,
    /// Its top-level fields: name and the raw text of the value.
    fields: Vec<(String, String)>,
}

/// The first state of each account seen recently, by run and account.
#[derive(Default)]
pub(in crate::audit) struct PriorStates {
    bases: HashMap<(i64, String), Base>,
}

impl PriorStates {
    /// Forgets every state: after a rolled-back group, the records they name may not exist.
    pub(in crate::audit) fn forget(&mut self) {
        self.bases.clear();
    }

    /// Records `state`, the prior state of a row of `run_id`, and answers how the row names it.
    pub(in crate::audit) fn record(
        &mut self,
        conn: &Connection,
        chain: &mut ChainHead,
        run_id: i64,
        state: &str,
    ) -> rusqlite::Result<PriorState> {
        let fields = content_fields(state).map(|f| {
            f.into_iter()
                .map(|(name, value)| (name, value.to_string()))
                .collect::<Vec<_>>()
        });
        // An account is known by its id; a state without one is its own key.
        let key = fields
            .as_ref()
            .and_then(|f| f.iter().find(|(name, _)| name == "id"))
            .map_or_else(|| state.to_string(), |(_, id)| id.clone());
        if let (Some(fields), Some(base)) = (&fields, self.bases.get(&(run_id, key.clone())))
            && let Some(patch) = patch(&base.fields, fields, state)
        {
            return Ok(PriorState {
                state: base.seq,
                patch,
            });
        }
        let seq = stored(conn, chain, run_id, state)?;
        if let Some(fields) = fields {
            if self.bases.len() >= MAX_BASES {
                self.bases.clear();
            }
            self.bases.insert((run_id, key), Base { seq, fields });
        }
        Ok(PriorState {
            state: seq,
            patch: None,
        })
    }
}

/// The merge patch that turns `base` into `fields` (whose text is `state`): `Some(None)` when
/// they are equal, `None` when no patch gives back exactly `state`.
fn patch(
    base: &[(String, String)],
    fields: &[(String, String)],
    state: &str,
) -> Option<Option<String>> {
    if base.len() != fields.len() || base.iter().zip(fields).any(|(b, f)| b.0 != f.0) {
        return None;
    }
    let changed: Vec<&(String, String)> = base
        .iter()
        .zip(fields)
        .filter(|(b, f)| b.1 != f.1)
        .map(|(_, f)| f)
        .collect();
    if changed.is_empty() {
        return Some(None);
    }
    if changed
        .iter()
        .any(|(_, value)| value == "null" || value.starts_with('{'))
    {
        return None;
    }
    // What json_patch will give: the base's fields in order, the changed values in place.
    if object(fields.iter()) != state {
        return None;
    }
    Some(Some(object(changed.into_iter())))
}

/// The JSON object of `fields` (names and raw value texts), written as serde_json writes one.
fn object<'a>(fields: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).expect("a string serializes"));
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// Appends `state` to `prior_states`; answers its record's number.
fn stored(
    conn: &Connection,
    chain: &mut ChainHead,
    run_id: i64,
    state: &str,
) -> rusqlite::Result<i64> {
    chain.append(conn, &PRIOR_STATES, &[&state, &run_id])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::db::{Durability, open};

    #[test]
    fn later_states_of_an_account_are_patches_the_view_turns_back_into_them() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("audit.db"), Durability::Full).unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        let mut chain = ChainHead::read(&tx).unwrap();
        let mut states = PriorStates::default();
        let first = r#"{"id":"a1","name":"TECH\\a \"q\" é\n","allow_restore_all_vms":false,"roles":[{"id":"r1","name":"x"}],"scopes":[]}"#;
        let second = r#"{"id":"a1","name":"TECH\\a \"q\" é\n","allow_restore_all_vms":false,"roles":[{"id":"r1","name":"x"},{"id":"r2","name":"y\t"}],"scopes":[]}"#;
        let third = r#"{"id":"a1","name":"TECH\\a \"q\" é\n","allow_restore_all_vms":true,"roles":[{"id":"r1","name":"x"},{"id":"r2","name":"y\t"}],"scopes":[]}"#;
        // A field an object or null, or fields in another order: stored whole.
        let object =
            r#"{"id":"a1","name":"n","allow_restore_all_vms":{"x":1},"roles":[],"scopes":[]}"#;
        let other = r#"{"id":"b2","roles":[],"name":"m"}"#;
        let a = states.record(&tx, &mut chain, 1, first).unwrap();
        assert_eq!(a.patch, None);
        let b = states.record(&tx, &mut chain, 1, second).unwrap();
        assert_eq!(b.state, a.state);
        assert_eq!(
            b.patch.as_deref(),
            Some(r#"{"roles":[{"id":"r1","name":"x"},{"id":"r2","name":"y\t"}]}"#)
        );
        let c = states.record(&tx, &mut chain, 1, third).unwrap();
        assert_eq!(c.state, a.state);
        let same = states.record(&tx, &mut chain, 1, first).unwrap();
        assert_eq!(
            same,
            PriorState {
                state: a.state,
                patch: None
            }
        );
        let d = states.record(&tx, &mut chain, 1, object).unwrap();
        assert_eq!(d.patch, None);
        assert_ne!(d.state, a.state);
        let e = states.record(&tx, &mut chain, 1, other).unwrap();
        assert_eq!(e.patch, None);
        // Another run stores the account's state anew, once.
        let again = states.record(&tx, &mut chain, 2, first).unwrap();
        assert_eq!(again.patch, None);
        assert_ne!(again.state, a.state);
        let later = states.record(&tx, &mut chain, 2, second).unwrap();
        assert_eq!(later.state, again.state);
        for (recorded, expected) in [(&b, second), (&c, third), (&d, object), (&e, other)] {
            let shown: String = tx
                .query_row(
                    "SELECT CASE WHEN ?2 IS NULL THEN content ELSE json_patch(content, ?2) END
                     FROM prior_states WHERE seq = ?1",
                    rusqlite::params![recorded.state, recorded.patch],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(shown, expected);
        }
        let stored: i64 = tx
            .query_row("SELECT count(*) FROM prior_states", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 4);
    }
}
