//! `undo`, `replay` and `resume` as users run them: the binary against the in-process emulator.

use std::path::Path;

use embatch::em::{RequestTag, Wire};
use embatch::emulator::{EmulatorConfig, RunningEmulator};

use crate::support::{self, FAST, has, pick};

async fn emulator() -> RunningEmulator {
    support::emulator(EmulatorConfig {
        accounts: 40,
        ..EmulatorConfig::default()
    })
    .await
}

/// Runs `embatch ARGS` against `emu` with the audit log `db`; returns the exit status and the
/// output for messages.
async fn embatch(emu: &RunningEmulator, db: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = support::cli(emu, db);
    cmd.args(args);
    if matches!(args[0], "apply" | "undo" | "replay" | "resume") {
        cmd.args(FAST);
    }
    let out = support::output(cmd).await;
    (out.status.code(), support::text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_the_state_and_is_refused_twice() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let before = support::accesses(&state);
    let mut taken = Vec::new();
    let a = pick(&state, &mut taken, |a| !has(a, "VM Restore Operator"));
    let b = pick(&state, &mut taken, |a| a.roles.len() >= 2);
    let c = pick(&state, &mut taken, |a| {
        !a.allow_restore_all_vms && !a.scopes.is_empty()
    });
    let d = pick(&state, &mut taken, |a| a.allow_restore_all_vms);
    let plan = format!(
        "account,action,target,object_name,ticket\n\
         {a},assign-role,VM Restore Operator,,CHG-7\n\
         {b},remove-role,{b_role},,CHG-7\n\
         {c},restore-all-vms,on,,CHG-7\n\
         {d},add-scope,urn:VMware:ResourcePool:11111111-2222-3333-4444-555555555555.resgroup-90,Undo-RP,CHG-7\n\
         {d},restore-all-vms,off,,CHG-7\n",
        a = a.name,
        b = b.name,
        b_role = b.roles[0].name,
        c = c.name,
        d = d.name,
    );
    let plan_path = dir.path().join("plan.csv");
    std::fs::write(&plan_path, plan).unwrap();
    let (code, out) = embatch(&emu, &db, &["apply", plan_path.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(support::accesses(&emu.state()), before);

    let (code, out) = embatch(&emu, &db, &["undo", "1"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(support::outcomes(&db, 2), vec!["applied"; 5]);
    assert_eq!(
        support::accesses(&emu.state()),
        before,
        "undo restored every account"
    );

    let writes = emu.journal().len();
    let (code, out) = embatch(&emu, &db, &["undo", "1"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("already undone by run 2"), "{out}");
    assert_eq!(emu.journal().len(), writes, "a refused undo sends nothing");

    let (_, runs) = embatch(&emu, &db, &["runs"]).await;
    assert!(runs.contains("undo"), "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_records_drift_as_conflict() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let a = pick(&state, &mut taken, |a| !has(a, "VM Restore Operator"));
    let e = pick(&state, &mut taken, |a| !has(a, "SQL Restore Operator"));
    let plan_path = dir.path().join("plan.csv");
    std::fs::write(
        &plan_path,
        format!(
            "account,action,target\n{},assign-role,VM Restore Operator\n{},assign-role,SQL Restore Operator\n",
            a.name, e.name
        ),
    )
    .unwrap();
    let (code, out) = embatch(&emu, &db, &["apply", plan_path.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");

    // Someone else takes the role away again before the undo.
    let client = support::client(&emu, Wire::Xml);
    let vm = uuid::Uuid::parse_str("c11c0c38-ba8b-49c7-bf70-fc2058fff1e2").unwrap();
    client
        .call(RequestTag::default())
        .remove_role(a.id, vm)
        .await
        .unwrap();
    let writes = emu.journal().len();

    let (code, out) = embatch(&emu, &db, &["undo", "1"]).await;
    assert_eq!(code, Some(1), "a conflict is not a success: {out}");
    // Newest first: the second row of run 1 is the first of the undo.
    assert_eq!(support::outcomes(&db, 2), vec!["applied", "conflict"]);
    let journal = emu.journal();
    assert_eq!(
        journal.len(),
        writes + 1,
        "only the undriffted row was undone"
    );
    assert_eq!(journal.last().unwrap().account, Some(e.id));
    // The row left alone is listed after the summary, by the undone run and its line (the
    // inverse rows name the account and role by id).
    assert!(
        out.contains(&format!(
            "run 1 line 2: {} remove-role {vm}: conflict: changed since the undone run",
            a.id
        )),
        "{out}"
    );
    let (_, show) = embatch(&emu, &db, &["show", "2"]).await;
    assert!(show.contains("conflict"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_failed_only_runs_exactly_the_failed_rows() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let only = pick(&state, &mut taken, |a| {
        a.roles.len() == 1 && a.roles[0].name == "Portal User"
    });
    let x = pick(&state, &mut taken, |a| !has(a, "Exchange Restore Operator"));
    let y = pick(&state, &mut taken, |a| !has(a, "Exchange Restore Operator"));
    let plan_path = dir.path().join("plan.csv");
    std::fs::write(
        &plan_path,
        format!(
            "account,action,target\n{x},assign-role,Exchange Restore Operator\n\
             {only},remove-role,Portal User\n{y},assign-role,Exchange Restore Operator\n",
            x = x.name,
            y = y.name,
            only = only.name
        ),
    )
    .unwrap();
    let (code, out) = embatch(&emu, &db, &["apply", plan_path.to_str().unwrap()]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        support::outcomes(&db, 1),
        vec!["applied", "failed", "applied"]
    );

    // The cause is fixed by hand: the account gets another role first.
    let file_restore = "urn:veeam:EnterpriseRole:f84a8b62-49b8-4d0c-b25b-92321b52bab6";
    support::client(&emu, Wire::Xml)
        .call(RequestTag::default())
        .assign_role(only.id, file_restore)
        .await
        .unwrap();

    let (code, out) = embatch(&emu, &db, &["replay", "1", "--failed-only"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        support::outcomes(&db, 2),
        vec!["applied"],
        "exactly the failed row ran"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (kind, parent, line): (String, i64, i64) = conn
        .query_row(
            "SELECT s.kind, s.parent_run_id, c.line FROM run_summary s JOIN change_log c ON c.run_id = s.run_id WHERE s.run_id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), parent, line), ("replay", 1, 3));

    // A full replay finds everything in place.
    let (code, out) = embatch(&emu, &db, &["replay", "1"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(support::outcomes(&db, 3), vec!["noop"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_removals_need_a_known_ref_and_the_inverse_plan_round_trips() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let c = pick(&state, &mut taken, |a| a.scopes.len() >= 2);
    let a = pick(&state, &mut taken, |a| !has(a, "Oracle Restore Operator"));
    let d = pick(&state, &mut taken, |_| true);
    let plan = dir.path().join("plan.csv");
    std::fs::write(
        &plan,
        format!(
            "account,action,target,object_name\n{c},remove-scope,{scope},\n{a},assign-role,Oracle Restore Operator,\n\
             {d},add-scope,urn:VMware:Folder:11111111-2222-3333-4444-555555555555.group-v9,Known-Folder\n",
            c = c.name,
            scope = c.scopes[0].name,
            a = a.name,
            d = d.name
        ),
    )
    .unwrap();
    let (code, out) = embatch(&emu, &db, &["apply", plan.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");

    // EM never showed the seeded scope's object ref, so its removal cannot be undone.
    let writes = emu.journal().len();
    let (code, out) = embatch(&emu, &db, &["undo", "1"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("cannot be undone completely"), "{out}");
    assert_eq!(emu.journal().len(), writes);

    let (code, out) = embatch(&emu, &db, &["undo", "1", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing was sent"), "{out}");
    let inverse = dir.path().join("inverse.csv");
    let (code, out) = embatch(
        &emu,
        &db,
        &["undo", "1", "--emit-plan", inverse.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = embatch(&emu, &db, &["check", inverse.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "the inverse plan is a valid plan: {out}");
    let text = std::fs::read_to_string(&inverse).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(emu.journal().len(), writes, "neither sent anything");

    // A scope this log saw created can be removed and put back: its ref is on record.
    let second = dir.path().join("second.csv");
    std::fs::write(
        &second,
        format!(
            "account,action,target\n{},remove-scope,Known-Folder\n",
            d.name
        ),
    )
    .unwrap();
    let (code, out) = embatch(&emu, &db, &["apply", second.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = embatch(&emu, &db, &["undo", "2"]).await;
    assert_eq!(code, Some(0), "{out}");
    let now = emu.state();
    let d_now = now.accounts.iter().find(|x| x.id == d.id).unwrap();
    assert!(
        d_now.scopes.iter().any(|s| s.name == "Known-Folder"
            && s.obj_ref == "urn:VMware:Folder:11111111-2222-3333-4444-555555555555.group-v9"),
        "{d_now:?}"
    );

    // With --allow-partial the rest of run 1 is undone; the scope run 1 created is no longer
    // the one on the account (run 2 removed it, run 3 made a new one), so that row is a
    // conflict and left alone.
    let (code, out) = embatch(&emu, &db, &["undo", "1", "--allow-partial"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(support::outcomes(&db, 4), vec!["conflict", "applied"]);
    let a_now = emu
        .state()
        .accounts
        .into_iter()
        .find(|x| x.id == a.id)
        .unwrap();
    assert!(!has(&a_now, "Oracle Restore Operator"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_max_failures_is_resumed_under_its_id() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let only = pick(&state, &mut taken, |a| {
        a.roles.len() == 1 && a.roles[0].name == "Portal User"
    });
    let mut plan = format!(
        "account,action,target\n{},remove-role,Portal User\n",
        only.name
    );
    let others = 15;
    for _ in 0..others {
        let a = pick(&state, &mut taken, |a| !has(a, "SQL Restore Operator"));
        plan.push_str(&format!("{},assign-role,SQL Restore Operator\n", a.name));
    }
    let plan_path = dir.path().join("plan.csv");
    std::fs::write(&plan_path, plan).unwrap();
    // A run at concurrency 1 has two workers (one waits for its record while the other's
    // request is on the wire). The first account's row fails on its first read; meanwhile the
    // other worker works through the other accounts in plan order, two requests each, and is
    // stopped long before the last of them: which ones it reached depends on timing.
    let mut cmd = support::cli(&emu, &db);
    cmd.arg("apply").arg(&plan_path).args([
        "--concurrency",
        "1",
        "--rate",
        "5000",
        "--max-failures",
        "1",
    ]);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let outcomes = support::outcomes(&db, 1);
    assert_eq!(outcomes[0], "failed");
    let rest = &outcomes[1..];
    assert!(
        rest.iter().all(|o| o == "applied" || o == "skipped"),
        "{outcomes:?}"
    );
    // Plan order: the rows reached come first, then those the stop skipped.
    let reached = rest.iter().take_while(|o| *o == "applied").count();
    assert!(
        reached < others && rest[reached..].iter().all(|o| o == "skipped"),
        "{outcomes:?}"
    );
    let (_, runs) = embatch(&emu, &db, &["runs"]).await;
    assert!(runs.contains("embatch resume 1"), "{runs}");

    let (code, out) = embatch(&emu, &db, &["resume", "1"]).await;
    // The failure before the resume still counts: the run as a whole has a failed row.
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("failed before the resume"), "{out}");
    let outcomes = support::outcomes(&db, 1);
    assert_eq!(outcomes[0], "failed");
    assert!(outcomes[1..].iter().all(|o| o == "applied"), "{outcomes:?}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (runs, resumes): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM run_resumes)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((runs, resumes), (1, 1), "resumed under the same id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rebuilds_after_a_run_and_on_their_own_are_recorded() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let d = pick(&state, &mut taken, |_| true);
    let plan = dir.path().join("plan.csv");
    std::fs::write(
        &plan,
        format!(
            "account,action,target,object_name\n{},add-scope,urn:VMware:Folder:11111111-2222-3333-4444-555555555555.group-v77,Rebuilt\n",
            d.name
        ),
    )
    .unwrap();
    let (code, out) = embatch(
        &emu,
        &db,
        &["apply", plan.to_str().unwrap(), "--rebuild-scopes"],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("scope rebuild: task-"), "{out}");
    let now = emu.state();
    let scope = now
        .accounts
        .iter()
        .find(|a| a.id == d.id)
        .and_then(|a| a.scopes.iter().find(|s| s.name == "Rebuilt"))
        .unwrap()
        .clone();
    assert_eq!(scope.state, "Processed");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rebuilds: i64 = conn
        .query_row(
            "SELECT count(*) FROM request_log WHERE run_id = 1 AND method = 'POST' AND path LIKE '%rebuildScope%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rebuilds, 1);

    // On its own, as a run of its own.
    let (code, out) = embatch(&emu, &db, &["rebuild-scopes"]).await;
    assert_eq!(code, Some(0), "{out}");
    let kind: String = conn
        .query_row("SELECT kind FROM run_summary WHERE run_id = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kind, "rebuild-scopes");
    let rebuilt = emu
        .journal()
        .iter()
        .filter(|e| matches!(e.effect, embatch::emulator::Effect::ScopesRebuilt { .. }))
        .count();
    assert_eq!(rebuilt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_scope_rebuild_runs_are_not_replayed_undone_or_resumed() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut cmd = support::cli(&emu, &db);
    cmd.args(["snapshot", "--all", "--format", "csv"])
        .args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", support::text(&out));
    let (code, out) = embatch(&emu, &db, &["rebuild-scopes"]).await;
    assert_eq!(code, Some(0), "{out}");

    let requests = emu.requests().len();
    for (run, says) in [
        (
            "1",
            "run 1 is a snapshot run: it only read accounts, so there is nothing to",
        ),
        ("2", "run 2 is a scope rebuild run"),
    ] {
        for command in ["replay", "undo", "resume"] {
            let (code, out) = embatch(&emu, &db, &[command, run]).await;
            assert_eq!(code, Some(2), "{command} {run}: {out}");
            assert!(
                out.contains(says) && out.contains(&format!("nothing to {command}")),
                "{command} {run}: {out}"
            );
            assert!(!out.contains("valid plan"), "{out}");
        }
    }
    assert_eq!(emu.requests().len(), requests, "nothing was sent");
}

/// Runs made from the log have no plan file of their own: their failed rows are named by the
/// run they came from and its line. A resumed apply run still has its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_from_the_log_name_the_run_and_line_of_their_failed_rows() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = emu.state();
    let mut taken = Vec::new();
    let only = pick(&state, &mut taken, |a| {
        a.roles.len() == 1 && a.roles[0].name == "Portal User"
    });
    let x = pick(&state, &mut taken, |a| !has(a, "Exchange Restore Operator"));
    let plan = dir.path().join("plan.csv");
    std::fs::write(
        &plan,
        format!(
            "account,action,target\n{only},remove-role,Portal User\n\n\
             TECH\\nobody,assign-role,Portal User\n{x},assign-role,Exchange Restore Operator\n",
            only = only.name,
            x = x.name
        ),
    )
    .unwrap();
    let file = plan.display().to_string();
    let last_role = format!(
        "line 2: {0} remove-role \"Portal User\": would remove the last role of {0}",
        only.name
    );
    let unknown =
        "line 4: TECH\\nobody assign-role \"Portal User\": unknown account 'TECH\\nobody'";

    let (code, out) = embatch(&emu, &db, &["apply", &file]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{file}:2: ")), "{out}");
    assert!(out.contains(&format!("{file}:4: TECH\\nobody")), "{out}");

    // A resumed apply run names the lines of its plan file.
    let (code, out) = embatch(&emu, &db, &["resume", "1"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("{file}:2: ")), "{out}");

    let (code, out) = embatch(&emu, &db, &["replay", "1", "--failed-only"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("run 1 {last_role}")), "{out}");
    assert!(out.contains(&format!("run 1 {unknown}")), "{out}");
    assert!(!out.contains(&format!("{file}:")), "{out}");

    // Resuming the replay (run 2) still names run 1's lines.
    let (code, out) = embatch(&emu, &db, &["resume", "2"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("run 1 {unknown}")), "{out}");

    let mut cmd = support::cli(&emu, &db);
    cmd.args(["replay", "1", "--failed-only", "--output", "json"])
        .args(FAST);
    let out = support::output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", support::text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["failures_total"], 2, "{summary}");
    let first = &summary["failures"][0];
    assert_eq!(
        (&first["run"], &first["line"]),
        (&1.into(), &2.into()),
        "{summary}"
    );
    assert!(first.get("file").is_none(), "{summary}");
}
