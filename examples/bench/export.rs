//! `--mode export`: `embatch export` of a large audit log, in every format, and how far the
//! process's peak memory rises while it runs.
//!
//! Applying a million rows takes minutes, and the export reads only what a run leaves in the
//! log, so the log is written by the audit writer alone: one completed run whose rows look like
//! an apply's
//! (account, role, ticket, a formula-like comment that CSV must defuse, a prior state of about
//! 300 bytes, a result). The export is measured at a tenth of the rows and at all of them: a
//! streamed export rises by the same few MiB at both sizes, while one that held its rows would
//! rise ten times as much at the larger one.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use embatch::audit::{
    AuditReader, AuditWriter, ExportFilter, ExportFormat, NewRun, RowColumns, RowResult, RunStatus,
};

use crate::measure::{db_bytes, mib, status_kib};

/// Runs the export measurement at `rows / 10` and `rows` rows.
pub async fn run(rows: usize) -> Result<()> {
    println!("export: one run of N rows, exported to /dev/null in each format");
    println!(
        "{:>9} {:>7} {:>9} {:>11} {:>10} {:>15}",
        "rows", "format", "seconds", "rows/s", "out MiB", "peak rise MiB"
    );
    for n in [(rows / 10).max(1), rows] {
        let dir = tempfile::tempdir().context("create a temporary directory")?;
        let path = dir.path().join("audit.db");
        write_run(&path, n as u64)
            .await
            .context("write the audit log")?;
        let reader = AuditReader::open(&path)?;
        for (format, name) in [
            (ExportFormat::Csv, "csv"),
            (ExportFormat::Jsonl, "jsonl"),
            (ExportFormat::Json, "json"),
        ] {
            // Linux resets the peak (VmHWM) to the current resident set when "5" is written
            // here, so each export's rise is its own.
            std::fs::write("/proc/self/clear_refs", "5").context("reset the peak RSS")?;
            let before = status_kib("VmHWM");
            let out = Counting::default();
            let started = Instant::now();
            let mut out = std::io::BufWriter::new(out);
            let exported = reader.export(&ExportFilter::default(), format, &mut out)?;
            let secs = started.elapsed().as_secs_f64();
            let written = out.into_inner().map_err(|e| e.into_error())?.0;
            anyhow::ensure!(exported == n as u64, "exported {exported} of {n} rows");
            let rise = status_kib("VmHWM").saturating_sub(before) * 1024;
            println!(
                "{n:>9} {name:>7} {secs:>9.2} {:>11.0} {:>10.1} {:>15.1}",
                n as f64 / secs,
                mib(written),
                mib(rise)
            );
        }
        println!("{n:>9} rows: audit log {:.1} MiB", mib(db_bytes(&path)));
    }
    Ok(())
}

/// A sink that counts the bytes it is given, so the output's size is known without disk I/O.
#[derive(Default)]
struct Counting(u64);

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes one completed `apply` run of `rows` finished rows into the log at `path`, through
/// the audit writer as a run would (the log is append-only and hash-chained, so there is no
/// faster honest way), in batches so that memory stays flat.
async fn write_run(path: &Path, rows: u64) -> Result<()> {
    let writer = AuditWriter::spawn(path)?;
    let audit = writer.handle();
    let run_id = audit
        .begin_run(NewRun {
            kind: "apply".into(),
            parent_run_id: None,
            operator: "TECH\\admin".into(),
            server_url: "https://em.example.com:9398/api".into(),
            wire: "xml".into(),
            tls_verify: true,
            insecure: false,
            plan_file: Some("bulk.csv".into()),
            plan_sha256: Some("0".repeat(64)),
            tool_version: "0.1.0".into(),
            options: "{}".into(),
        })
        .await?;
    const BATCH: u64 = 10_000;
    let mut start = 0;
    while start < rows {
        let end = (start + BATCH).min(rows);
        // Awaited: everything sent before it is committed first, so the channel never holds
        // more than a batch.
        audit
            .add_rows(
                run_id,
                (start..end)
                    .map(|i| RowColumns {
                        row_no: i,
                        line: i + 2,
                        account: format!("TECH\\user{i:07}"),
                        action: "assign-role".into(),
                        target: "Restore Operator".into(),
                        object_name: None,
                        ticket: Some("CHG-20931".into()),
                        comment: Some("=HYPERLINK(\"x\")".into()),
                        annotations: None,
                    })
                    .collect(),
            )
            .await?;
        for i in start..end {
            let account = format!("TECH\\user{i:07}");
            let id = uuid::Uuid::from_u128(u128::from(i) + 1);
            let prior = serde_json::json!({
                "id": id,
                "name": account,
                "allow_restore_all_vms": false,
                "roles": [{ "id": uuid::Uuid::from_u128(7), "name": "Portal User" }],
                "scopes": [{ "id": uuid::Uuid::from_u128(u128::from(i) << 8), "name": "vm-01" }],
            });
            let result = serde_json::json!({ "role_id": uuid::Uuid::from_u128(9) });
            audit.row_account(run_id, i, &id.to_string());
            audit.row_finished(
                run_id,
                i,
                RowResult {
                    outcome: "applied".into(),
                    error: None,
                    prior_state: Some(prior.to_string()),
                    result: Some(result.to_string()),
                },
            );
        }
        start = end;
    }
    audit.end_run(run_id, RunStatus::Completed).await?;
    writer.close().await?;
    Ok(())
}
