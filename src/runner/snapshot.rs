//! `snapshot`: the periodic access review. Reads the current roles, scopes and restore-all-VMs
//! flag of the accounts a plan names, or of every account, under the run's shared rate limit,
//! and keeps the result in the audit log as a run of kind `snapshot`: one row per account,
//! outcome `noop` (nothing is ever sent but reads), its state as the prior state, and every HTTP
//! attempt recorded like apply's.
//!
//! The run is recorded before the first request, so the logon and the account listing are
//! recorded under it too. With `--all` the accounts are only known from that listing, so their
//! rows are added once it is read; with a plan, the rows (one per account the plan names) are
//! recorded with the run, before anything is sent.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::{AuditHandle, NewRun, RowColumns, RowResult, csv_safe};
use crate::em::{AccountType, EmError};
use crate::plan::{AccountRef, Plan};

use crate::exit::Exit;

use super::exec::Executor;
use super::pace::{AttemptLog, Pacer};
use super::pool::Pool;
use super::state::AccountState;
use super::{Outcome, Reads, RunError, RunSettings, account_text, by_name, connect};

/// The action recorded for each account of a snapshot run.
pub const SNAPSHOT_ACTION: &str = "snapshot";

/// The target recorded for each account of a snapshot run: what was read.
const SNAPSHOT_TARGET: &str = "roles, scopes, restore-all-vms";

/// When an account was read: RFC 3339 in UTC with milliseconds, as the audit log writes times.
const READ_AT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Which accounts to read.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    /// The accounts a plan names, in the order of their first row.
    Plan(&'a Plan),
    /// Every account EM lists (`GET /security/accounts`), in its order.
    All,
}

/// The output formats of `snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotFormat {
    /// CSV, one line per account; cells neutralised against formula injection.
    Csv,
    /// One JSON object per account and line.
    Jsonl,
}

/// The snapshot's CSV columns.
pub const SNAPSHOT_COLUMNS: [&str; 7] = [
    "account_id",
    "account",
    "type",
    "restore_all_vms",
    "roles",
    "scopes",
    "read_at",
];

/// One account's access as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountAccess {
    /// Its name, type, flag, roles and scopes (with object refs where the audit log knows
    /// them).
    pub state: AccountState,
    /// When the reads ended, RFC 3339 UTC.
    pub read_at: String,
}

/// An account that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFailure {
    /// The account as the plan or the listing names it.
    pub account: String,
    /// Why.
    pub error: String,
}

/// The end of a snapshot run.
#[derive(Clone, Debug)]
pub struct SnapshotReport {
    /// The run's id in the audit log.
    pub run_id: i64,
    /// The accounts read, in selection order, each once.
    pub accounts: Vec<AccountAccess>,
    /// The accounts that could not be read.
    pub failures: Vec<SnapshotFailure>,
    /// Ctrl-C stopped the reads before every account was read.
    pub interrupted: bool,
    /// HTTP attempts sent.
    pub requests: u64,
}

/// One account to read, as the run records it.
struct Target {
    /// The row's key in the run.
    row_no: u64,
    /// The plan's line, or 0 for an account from the listing.
    line: u64,
    /// The account as the plan or the listing names it.
    label: String,
    /// How the plan names it (`None` for the listing, whose accounts come with their GUID).
    reference: Option<AccountRef>,
    /// The GUID, once known.
    id: Option<Uuid>,
}

impl Target {
    fn new_row(&self) -> RowColumns {
        RowColumns {
            row_no: self.row_no,
            line: self.line,
            account: self.label.clone(),
            action: SNAPSHOT_ACTION.into(),
            target: SNAPSHOT_TARGET.into(),
            object_name: None,
            ticket: None,
            comment: None,
            annotations: None,
        }
    }
}

/// The distinct accounts a plan names, in the order of their first row; a name is matched
/// case-insensitively, as EM matches it.
fn plan_targets(plan: &Plan) -> Vec<Target> {
    let mut seen = std::collections::HashSet::new();
    let mut targets = Vec::new();
    for row in &plan.rows {
        let key = match &row.account {
            AccountRef::Id(id) => id.to_string(),
            AccountRef::Name(name) => name.to_lowercase(),
        };
        if seen.insert(key) {
            targets.push(Target {
                row_no: targets.len() as u64,
                line: row.line,
                label: account_text(&row.account),
                reference: Some(row.account.clone()),
                id: match &row.account {
                    AccountRef::Id(id) => Some(*id),
                    AccountRef::Name(_) => None,
                },
            });
        }
    }
    targets
}

/// Reads the access of the selected accounts and records it as a `snapshot` run.
///
/// `known_refs` are the object refs of scopes the audit log saw created, by scope id: EM's
/// scope listing never shows them. A Ctrl-C (`cancel`) stops starting new reads; the accounts
/// not read are recorded as skipped.
pub async fn snapshot(
    selection: Selection<'_>,
    settings: RunSettings,
    known_refs: HashMap<Uuid, String>,
    audit: AuditHandle,
    cancel: CancellationToken,
) -> Result<SnapshotReport, RunError> {
    let (plan_file, plan_sha256, targets) = match selection {
        Selection::Plan(plan) => (
            Some(plan.file.clone()),
            Some(plan.sha256.clone()),
            plan_targets(plan),
        ),
        Selection::All => (None, None, Vec::new()),
    };
    let run_id = audit
        .begin_run_with_rows(
            NewRun {
                kind: "snapshot".into(),
                parent_run_id: None,
                operator: settings.client.user.clone(),
                server_url: settings.client.base_url.to_string(),
                wire: settings.client.wire.as_str().into(),
                tls_verify: !settings.client.tls.insecure,
                insecure: settings.client.tls.insecure,
                plan_file,
                plan_sha256,
                tool_version: env!("CARGO_PKG_VERSION").into(),
                options: settings.options_json.clone(),
            },
            targets.iter().map(Target::new_row).collect(),
        )
        .await?;
    let outcome = read_all(
        targets,
        matches!(selection, Selection::All),
        run_id,
        &settings,
        known_refs,
        &audit,
        cancel,
    )
    .await;
    let outcome = super::unless_log_failed(&audit, run_id, outcome);
    super::end_run(&audit, run_id, outcome, Exit::of_snapshot).await
}

/// Logs on, settles the list of accounts, reads them `concurrency` at a time and records each.
async fn read_all(
    mut targets: Vec<Target>,
    all: bool,
    run_id: i64,
    settings: &RunSettings,
    known_refs: HashMap<Uuid, String>,
    audit: &AuditHandle,
    cancel: CancellationToken,
) -> Result<SnapshotReport, RunError> {
    let pacer = Arc::new(Pacer::new(
        &settings.pace,
        Some(AttemptLog {
            audit: audit.clone(),
            run_id,
        }),
        None,
    ));
    let reads = Reads {
        // A snapshot decides nothing, so it needs no role table (and spares the request).
        roles: false,
        accounts: all
            || targets
                .iter()
                .any(|t| matches!(t.reference, Some(AccountRef::Name(_)))),
    };
    let (executor, listing) = connect(
        &settings.client,
        pacer.clone(),
        &settings.pace,
        known_refs,
        reads,
    )
    .await?;
    let executor = Arc::new(executor);
    let _watch = super::stop_on_log_failure(audit, &cancel);

    if let Some(listing) = listing {
        if all {
            targets = listing
                .into_iter()
                .filter_map(|a| a.id().map(|id| (id, a.name)))
                .enumerate()
                .map(|(i, (id, name))| Target {
                    row_no: i as u64,
                    line: 0,
                    label: name,
                    reference: None,
                    id: Some(id),
                })
                .collect();
            audit
                .add_rows(run_id, targets.iter().map(Target::new_row).collect())
                .await?;
        } else {
            let by_name = by_name(listing);
            for t in &mut targets {
                if let Some(AccountRef::Name(name)) = &t.reference {
                    t.id = by_name.get(&name.to_lowercase()).copied();
                }
            }
        }
    }

    let mut failures = Vec::new();
    // The rows of each account: two plan rows may name one account (by name and by GUID); it is
    // read once and both rows record the same state.
    let mut accounts: Vec<(Uuid, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        match t.id {
            Some(id) => {
                audit.row_account(run_id, t.row_no, &id.to_string());
                let slot = *index.entry(id).or_insert_with(|| {
                    accounts.push((id, Vec::new()));
                    accounts.len() - 1
                });
                accounts[slot].1.push(i);
            }
            None => {
                let error = format!("unknown account '{}'", t.label);
                finish(
                    audit,
                    run_id,
                    t,
                    Outcome::Failed,
                    Some(error.clone()),
                    None,
                    None,
                );
                failures.push(SnapshotFailure {
                    account: t.label.clone(),
                    error,
                });
            }
        }
    }

    let mut read: Vec<Option<AccountAccess>> = vec![None; accounts.len()];
    let mut pending = accounts.iter().enumerate();
    let mut interrupted = false;
    // Reads run `concurrency` accounts at a time. A panic stops them on a token of their own,
    // so that it reads as the bug it is, not as a Ctrl-C.
    let pool = Pool {
        limit: settings.pace.concurrency,
        cancel: cancel.child_token(),
    };
    let ran = pool
        .run(
            || std::future::ready(pending.next()),
            |(slot, (id, rows))| {
                let executor = executor.clone();
                let (id, first) = (*id, targets[rows[0]].row_no);
                async move { (slot, read_account(&executor, id, first).await) }
            },
            |(slot, result)| {
                let rows = &accounts[slot].1;
                match result {
                    Ok(access) => {
                        let state = access.state.to_json();
                        let facts = serde_json::json!({
                            "account_type": access.account_type(),
                            "read_at": access.read_at,
                        })
                        .to_string();
                        for &i in rows {
                            finish(
                                audit,
                                run_id,
                                &targets[i],
                                Outcome::Noop,
                                None,
                                Some(state.clone()),
                                Some(facts.clone()),
                            );
                        }
                        read[slot] = Some(access);
                    }
                    Err(e) => {
                        let error = format!("read account {}: {e}", targets[rows[0]].label);
                        for &i in rows {
                            finish(
                                audit,
                                run_id,
                                &targets[i],
                                Outcome::Failed,
                                Some(error.clone()),
                                None,
                                None,
                            );
                        }
                        failures.push(SnapshotFailure {
                            account: targets[rows[0]].label.clone(),
                            error,
                        });
                    }
                }
            },
        )
        .await;
    // A bug: the accounts not read yet stay unread.
    if let Err(why) = ran {
        return Err(RunError::Internal(why));
    }
    // Accounts never started stay on record as not read, and say why.
    for (_, (_, rows)) in pending {
        interrupted = true;
        for &i in rows {
            finish(
                audit,
                run_id,
                &targets[i],
                Outcome::Skipped,
                Some("not read: the snapshot was interrupted first".into()),
                None,
                None,
            );
        }
    }

    // Logging out is a courtesy to the server; a failure here changes nothing for the run.
    if let Err(e) = executor.client.logout().await {
        tracing::warn!("logout failed: {e}");
    }
    Ok(SnapshotReport {
        run_id,
        accounts: read.into_iter().flatten().collect(),
        failures,
        interrupted,
        requests: pacer.requests(),
    })
}

/// Records how one account's row ended.
fn finish(
    audit: &AuditHandle,
    run_id: i64,
    target: &Target,
    outcome: Outcome,
    error: Option<String>,
    prior_state: Option<String>,
    result: Option<String>,
) {
    audit.row_finished(
        run_id,
        target.row_no,
        RowResult {
            outcome: outcome.as_str().into(),
            error,
            prior_state,
            result,
        },
    );
}

/// Reads one account, its roles and its scopes, each retried as the pace allows; the requests
/// are tagged with the account's (first) row, so the request log ties them to it.
async fn read_account(
    executor: &Executor,
    id: Uuid,
    row_no: u64,
) -> Result<AccountAccess, EmError> {
    let state = executor.read_state(id, Some(row_no)).await?;
    Ok(AccountAccess {
        state,
        read_at: OffsetDateTime::now_utc()
            .format(READ_AT)
            .expect("a UTC date-time always formats with a fixed description"),
    })
}

/// A role in a JSON line.
#[derive(Serialize)]
struct RoleLine<'a> {
    id: Uuid,
    name: &'a str,
}

/// A scope in a JSON line; `obj_ref` is null when the audit log does not know it.
#[derive(Serialize)]
struct ScopeLine<'a> {
    id: Uuid,
    name: &'a str,
    platform: &'a str,
    object_type: &'a str,
    root: &'a str,
    obj_ref: Option<&'a str>,
}

/// One account in a JSON line.
#[derive(Serialize)]
struct AccountLine<'a> {
    account_id: Uuid,
    account: &'a str,
    #[serde(rename = "type")]
    account_type: &'a str,
    restore_all_vms: bool,
    roles: Vec<RoleLine<'a>>,
    scopes: Vec<ScopeLine<'a>>,
    read_at: &'a str,
}

impl AccountAccess {
    /// User, Group, ... as EM spells it. A state read from EM always has its type; an access
    /// built without one shows an empty type rather than a made-up one.
    fn account_type(&self) -> &'static str {
        self.state.account_type.map_or("", AccountType::as_str)
    }

    fn line(&self) -> AccountLine<'_> {
        AccountLine {
            account_id: self.state.id,
            account: &self.state.name,
            account_type: self.account_type(),
            restore_all_vms: self.state.allow_restore_all_vms,
            roles: self
                .state
                .roles
                .iter()
                .map(|r| RoleLine {
                    id: r.id,
                    name: &r.name,
                })
                .collect(),
            scopes: self
                .state
                .scopes
                .iter()
                .map(|s| ScopeLine {
                    id: s.id,
                    name: &s.name,
                    platform: &s.platform,
                    object_type: &s.object_type,
                    root: &s.root,
                    obj_ref: s.obj_ref.as_deref(),
                })
                .collect(),
            read_at: &self.read_at,
        }
    }

    /// The account as CSV cells, in [`SNAPSHOT_COLUMNS`] order: role names joined with `; `,
    /// and scope names, each followed by its object ref in parentheses when it is known.
    fn csv_cells(&self) -> [String; 7] {
        let roles: Vec<&str> = self.state.roles.iter().map(|r| r.name.as_str()).collect();
        let scopes: Vec<String> = self
            .state
            .scopes
            .iter()
            .map(|s| match &s.obj_ref {
                Some(obj_ref) => format!("{} ({obj_ref})", s.name),
                None => s.name.clone(),
            })
            .collect();
        [
            self.state.id.to_string(),
            self.state.name.clone(),
            self.account_type().to_string(),
            self.state.allow_restore_all_vms.to_string(),
            roles.join("; "),
            scopes.join("; "),
            self.read_at.clone(),
        ]
    }
}

/// Writes `accounts` to `out` in `format`.
pub fn write_snapshot<W: Write>(
    accounts: &[AccountAccess],
    format: SnapshotFormat,
    mut out: W,
) -> io::Result<()> {
    match format {
        SnapshotFormat::Csv => {
            let mut csv = csv::Writer::from_writer(&mut out);
            csv.write_record(SNAPSHOT_COLUMNS)?;
            for account in accounts {
                let cells = account.csv_cells();
                csv.write_record(cells.iter().map(|c| csv_safe(c).into_owned()))?;
            }
            csv.flush()?;
        }
        SnapshotFormat::Jsonl => {
            for account in accounts {
                serde_json::to_writer(&mut out, &account.line())?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::state::{HeldRole, HeldScope};

    fn access(name: &str) -> AccountAccess {
        AccountAccess {
            state: AccountState {
                id: Uuid::from_u128(7),
                name: name.into(),
                allow_restore_all_vms: true,
                roles: vec![
                    HeldRole {
                        id: Uuid::from_u128(1),
                        name: "Portal User".into(),
                    },
                    HeldRole {
                        id: Uuid::from_u128(2),
                        name: "VM Restore Operator".into(),
                    },
                ],
                scopes: vec![
                    HeldScope {
                        id: Uuid::from_u128(9),
                        name: "Finance".into(),
                        platform: "VMware".into(),
                        object_type: "ResourcePool".into(),
                        root: "root1".into(),
                        obj_ref: Some("urn:VMware:ResourcePool:root1.resgroup-5".into()),
                    },
                    HeldScope {
                        id: Uuid::from_u128(10),
                        name: "Sales".into(),
                        platform: "VMware".into(),
                        object_type: "Folder".into(),
                        root: "root1".into(),
                        obj_ref: None,
                    },
                ],
                account_type: Some(AccountType::Group),
                flr: None,
                sql: None,
            },
            read_at: "2026-11-23T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn csv_lines_join_names_and_neutralise_cells() {
        let mut out = Vec::new();
        write_snapshot(
            &[access("TECH\\ops"), access("=cmd|' /C calc'!A0")],
            SnapshotFormat::Csv,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            SNAPSHOT_COLUMNS
        );
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(
            records[0].iter().collect::<Vec<_>>(),
            [
                "00000000-0000-0000-0000-000000000007",
                "TECH\\ops",
                "Group",
                "true",
                "Portal User; VM Restore Operator",
                "Finance (urn:VMware:ResourcePool:root1.resgroup-5); Sales",
                "2026-11-23T10:00:00.000Z",
            ]
        );
        assert_eq!(&records[1][1], "'=cmd|' /C calc'!A0");
    }

    #[test]
    fn json_lines_hold_ids_and_every_scope_field() {
        let mut out = Vec::new();
        write_snapshot(&[access("TECH\\ops")], SnapshotFormat::Jsonl, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["type"], "Group");
        assert_eq!(value["restore_all_vms"], true);
        assert_eq!(value["roles"][1]["name"], "VM Restore Operator");
        assert_eq!(
            value["scopes"][0]["obj_ref"],
            "urn:VMware:ResourcePool:root1.resgroup-5"
        );
        assert_eq!(value["scopes"][1]["obj_ref"], serde_json::Value::Null);
        assert_eq!(value["scopes"][1]["object_type"], "Folder");
    }

    #[test]
    fn a_plan_names_each_account_once_in_first_row_order() {
        let alice = Uuid::from_u128(5);
        let plan = crate::plan::parse(
            "plan.csv",
            format!(
                "account,action,target\nTECH\\alice,assign-role,Portal User\n{alice},restore-all-vms,on\n\
                 tech\\ALICE,assign-role,VM Restore Operator\nTECH\\bob,restore-all-vms,off\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let targets = plan_targets(&plan);
        let seen: Vec<(u64, u64, &str, Option<Uuid>)> = targets
            .iter()
            .map(|t| (t.row_no, t.line, t.label.as_str(), t.id))
            .collect();
        assert_eq!(
            seen,
            [
                (0, 2, "TECH\\alice", None),
                (1, 3, &*alice.to_string(), Some(alice)),
                (2, 5, "TECH\\bob", None),
            ]
        );
        let row = targets[0].new_row();
        assert_eq!((row.action.as_str(), row.line), ("snapshot", 2));
    }
}
