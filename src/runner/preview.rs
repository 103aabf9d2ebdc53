//! `check --online`: reads the live state of every account in the plan and predicts, row by
//! row, what `apply` would do. It sends no write and records nothing.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::plan::{AccountRef, Action, Plan};
use crate::text;

use super::Job;
use super::accounts;
use super::exec::Executor;
use super::state::AccountState;

use super::pace::{Pace, Pacer};
use super::pool::Pool;
use super::rows::AccountIndex;
use super::state::{Change, Decision, decide};
use super::{Reads, RunError, by_name, connect};

/// What apply would do with one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "prediction", content = "detail")]
pub enum Prediction {
    /// A change would be sent.
    Change(String),
    /// Already in place.
    Noop(String),
    /// The row would fail.
    Fail(String),
}

/// One row of the preview.
#[derive(Clone, Debug, Serialize)]
pub struct PreviewRow {
    /// The row's physical line in the plan.
    pub line: u64,
    /// The account as the plan names it.
    pub account: String,
    /// The action.
    pub action: String,
    /// The target.
    pub target: String,
    /// What apply would do.
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// The whole preview.
#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    /// Rows in plan order.
    pub rows: Vec<PreviewRow>,
    /// Rows that would change something.
    pub changes: usize,
    /// Rows already in place.
    pub noops: usize,
    /// Rows that would fail.
    pub failures: usize,
    /// Rows for which apply would refuse the whole plan before its first write: they would
    /// lock everyone out of EM.
    pub refused: Vec<super::Refusal>,
}

impl Preview {
    /// The preview as text, one row a line, with control characters escaped.
    pub fn text(&self, file: &str) -> String {
        let mut out = String::new();
        for r in &self.rows {
            let (word, detail) = match &r.prediction {
                Prediction::Change(d) => ("change", d),
                Prediction::Noop(d) => ("no-op ", d),
                Prediction::Fail(d) => ("FAIL  ", d),
            };
            // Names come from the plan and details from the server: shown, never acted on by
            // the terminal.
            let _ = writeln!(
                out,
                "{}:{}: {word} {} {} {}: {}",
                text::printable(file),
                r.line,
                text::printable(&r.account),
                text::printable(&r.action),
                text::printable(&r.target),
                text::printable(detail)
            );
        }
        let _ = writeln!(
            out,
            "{} rows: {} would change, {} already in place, {} would fail",
            self.rows.len(),
            self.changes,
            self.noops,
            self.failures
        );
        if !self.refused.is_empty() {
            let _ = writeln!(
                out,
                "apply would refuse this plan before its first write: {} row{} would lock \
                 everyone out of EM:",
                self.refused.len(),
                if self.refused.len() == 1 { "" } else { "s" }
            );
            for r in &self.refused {
                let _ = writeln!(
                    out,
                    "{}:{}: {} {} {}: {}",
                    text::printable(file),
                    r.line,
                    text::printable(&r.account),
                    text::printable(&r.action),
                    text::printable(&r.target),
                    text::printable(&r.reason)
                );
            }
        }
        out
    }
}

/// Reads the state of the plan's accounts and predicts each row.
pub async fn preview(
    plan: &Plan,
    client: crate::em::ClientConfig,
    pace: Pace,
) -> Result<Preview, RunError> {
    let pacer = Arc::new(Pacer::new(&pace, None, None));
    let mut index = AccountIndex::default();
    for (i, row) in plan.rows.iter().enumerate() {
        index.push(i as u64, &row.account);
    }
    let reads = Reads {
        roles: true,
        accounts: index.names_needed(),
    };
    let (executor, accounts) = connect(&client, pacer, &pace, Default::default(), reads).await?;
    let groups = index.into_groups(&accounts.map(by_name).unwrap_or_default());
    let executor = Arc::new(executor);
    // The judgement apply makes before its first write, on the same rows.
    let guarded: Vec<Job> = plan
        .rows
        .iter()
        .enumerate()
        .filter(|(_, row)| matches!(row.action, Action::DeleteAccount | Action::RemoveRole(_)))
        .map(|(i, row)| Job {
            row_no: i as u64,
            row: row.clone(),
            guard: None,
            maybe_sent: false,
            account_settings: None,
        })
        .collect();
    let refused = executor.preflight(&guarded).await?;
    let mut predictions: Vec<Option<Prediction>> = vec![None; plan.rows.len()];

    // Reads run `concurrency` accounts at a time, like apply; each answers the predictions of
    // its rows, by their place in the plan.
    let mut groups = groups.into_iter();
    let pool = Pool {
        limit: pace.concurrency,
        cancel: CancellationToken::new(),
    };
    let ran = pool
        .run(
            || std::future::ready(groups.next()),
            |group| {
                let executor = executor.clone();
                let rows: Vec<(usize, crate::plan::PlanRow)> = group
                    .rows
                    .iter()
                    .map(|&p| {
                        let i = usize::try_from(p).expect("positions of plan rows are indexes");
                        (i, plan.rows[i].clone())
                    })
                    .collect();
                let label = group.label();
                async move { predict_account(&executor, group.id, &label, rows).await }
            },
            |predicted| {
                for (i, p) in predicted {
                    predictions[i] = Some(p);
                }
            },
        )
        .await;
    // The preview has no run to stop and no log to leave as it was: a bug ends it as it would
    // end any command.
    if let Err(why) = ran {
        panic!("a preview task {why}");
    }
    if let Err(e) = executor.client.logout().await {
        tracing::warn!("logout failed: {e}");
    }

    let rows: Vec<PreviewRow> = plan
        .rows
        .iter()
        .zip(predictions)
        .map(|(row, p)| PreviewRow {
            line: row.line,
            account: super::account_text(&row.account),
            action: row.action.name().to_string(),
            target: row.action.target_text(),
            prediction: p.expect("every row got a prediction"),
        })
        .collect();
    let count = |f: fn(&Prediction) -> bool| rows.iter().filter(|r| f(&r.prediction)).count();
    Ok(Preview {
        changes: count(|p| matches!(p, Prediction::Change(_))),
        noops: count(|p| matches!(p, Prediction::Noop(_))),
        failures: count(|p| matches!(p, Prediction::Fail(_))),
        rows,
        refused,
    })
}

fn describe(change: &Change) -> String {
    match change {
        Change::DeleteAccount => {
            "would delete the account (its full state is recorded first)".into()
        }
        Change::AssignRole { name, .. } => format!("would assign {name}"),
        Change::RemoveRole { name, .. } => format!("would remove {name}"),
        Change::AddScope { item } => {
            format!("would add scope {} ({})", item.object_name, item.obj_ref)
        }
        Change::RemoveScope { name, scope } => format!("would remove scope {name} ({scope})"),
        Change::SetRestoreAllVms(v) => format!(
            "would turn restore-all-vms {} (one toggle)",
            if *v { "on" } else { "off" }
        ),
    }
}

/// Predicts the rows of one account, in order, without writing anything.
async fn predict_account(
    executor: &Executor,
    id: Option<uuid::Uuid>,
    label: &str,
    rows: Vec<(usize, crate::plan::PlanRow)>,
) -> Vec<(usize, Prediction)> {
    let fail_all = |rows: Vec<(usize, crate::plan::PlanRow)>, why: String| {
        rows.into_iter()
            .map(|(i, _)| (i, Prediction::Fail(why.clone())))
            .collect::<Vec<_>>()
    };
    let added = rows
        .iter()
        .find_map(|(_, row)| match (&row.action, &row.account) {
            (Action::AddAccount(kind), AccountRef::Name(name)) => {
                Some((*kind, name.clone(), row.line))
            }
            _ => None,
        });
    let mut out = Vec::new();
    let (mut state, rest) = match (id, added) {
        (None, None) => return fail_all(rows, format!("unknown account '{label}'")),
        (None, Some((kind, name, line))) => {
            // The account does not exist yet: its create request is predicted from the rows
            // folded into it, and the other rows are decided against the account it would make.
            let jobs: Vec<Job> = rows
                .iter()
                .map(|(_, row)| Job {
                    row_no: 0,
                    row: row.clone(),
                    guard: None,
                    maybe_sent: false,
                    account_settings: None,
                })
                .collect();
            let refs: Vec<&Job> = jobs.iter().collect();
            let plan = match accounts::plan_create(executor, kind, &name, &refs) {
                Ok(plan) => plan,
                Err(why) => {
                    return fail_all(rows, format!("account {name} could not be created: {why}"));
                }
            };
            let mut state = AccountState {
                id: uuid::Uuid::nil(),
                name: name.clone(),
                allow_restore_all_vms: plan.spec.allow_restore_all_vms,
                roles: Vec::new(),
                scopes: Vec::new(),
                account_type: Some(kind),
                flr: None,
                sql: None,
            };
            let mut rest = Vec::new();
            for (n, (i, row)) in rows.into_iter().enumerate() {
                if !plan.folded.contains(&n) {
                    rest.push((i, row));
                    continue;
                }
                let what = match &row.action {
                    Action::AddAccount(kind) => format!(
                        "would create {name} ({}) with {} role(s), {} scope(s), restore-all-vms {}",
                        kind.as_str(),
                        plan.spec.role_uids.len(),
                        plan.spec.scopes.len(),
                        if plan.spec.allow_restore_all_vms {
                            "on"
                        } else {
                            "off"
                        }
                    ),
                    other => {
                        if let Decision::Change(change) = decide(other, &executor.roles, &state) {
                            state.simulate(&change);
                        }
                        format!("in the create request of line {line}")
                    }
                };
                out.push((i, Prediction::Change(what)));
            }
            (state, rest)
        }
        (Some(id), added) => {
            let state = match executor.read_state(id, None).await {
                Ok(s) => s,
                Err(e) => return fail_all(rows, format!("cannot read account {label}: {e}")),
            };
            if let Some((_, name, _)) = added
                && state.name != name
            {
                return fail_all(
                    rows,
                    format!(
                        "'{name}' differs only in case from the existing account '{}'",
                        state.name
                    ),
                );
            }
            (state, rows)
        }
    };
    for (i, row) in rest {
        if let Some(why) = executor.refusal(&row.action, &state, true).await {
            out.push((i, Prediction::Fail(why)));
            continue;
        }
        let p = match decide(&row.action, &executor.roles, &state) {
            Decision::Noop(why) => Prediction::Noop(why),
            Decision::Fail(why) => Prediction::Fail(why),
            Decision::Change(change) => {
                let what = describe(&change);
                state.simulate(&change);
                Prediction::Change(what)
            }
        };
        out.push((i, p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_escapes_what_came_from_the_plan_and_the_server() {
        let preview = Preview {
            rows: vec![PreviewRow {
                line: 2,
                account: "TECH\\\u{202E}a\u{1b}[2J".into(),
                action: "assign-role".into(),
                target: "Portal\u{1b}]0;pwned\u{7}".into(),
                prediction: Prediction::Fail("unknown role 'Portal\u{1b}]0;pwned\u{7}'".into()),
            }],
            changes: 0,
            noops: 0,
            failures: 1,
            refused: Vec::new(),
        };
        assert_eq!(
            preview.text("p\u{1b}.csv"),
            "p\\u{1b}.csv:2: FAIL   TECH\\\\u{202e}a\\u{1b}[2J assign-role Portal\\u{1b}]0;pwned\\u{7}: \
             unknown role 'Portal\\u{1b}]0;pwned\\u{7}'\n\
             1 rows: 0 would change, 0 already in place, 1 would fail\n"
        );
    }
}
