//! The export: CSV cells that would start a formula neutralised, the `--since`/`--until` window
//! in UTC and its bad dates, each format written row by row (the JSON array, JSON columns, CSV
//! and JSON Lines), runs of a log exported filtered by run and time (a crashed one as crashed),
//! the query streamed in key order without a sort, and output files private and removed when
//! discarded.

use super::*;
use crate::audit::fixtures::{edit_facts, new_rows, new_run, outcome, writer_gone};
use crate::audit::{AuditWriter, RowColumns, RowResult, RunStatus};

#[test]
fn cells_that_start_a_formula_are_neutralised() {
    for cell in [
        "=HYPERLINK(\"http://x\",\"y\")",
        "+1",
        "-2+3",
        "@SUM(A1)",
        "\t=1",
        "\r=1",
    ] {
        assert_eq!(csv_safe(cell), format!("'{cell}"), "{cell:?}");
    }
    for cell in [
        "",
        "TECH\\alice",
        "a=b",
        " =1",
        "'=1",
        "2026-11-23T10:00:00.000Z",
        "{\"a\":1}",
    ] {
        assert!(
            matches!(csv_safe(cell), Cow::Borrowed(c) if c == cell),
            "{cell:?}"
        );
    }
}

#[test]
fn dates_cover_whole_utc_days() {
    let w = TimeWindow::parse(Some("2026-11-23"), Some("2026-11-24")).unwrap();
    assert_eq!(w.from.as_deref(), Some("2026-11-23T00:00:00.000Z"));
    assert_eq!(w.to.as_deref(), Some("2026-11-25T00:00:00.000Z"));
    // One day is a valid window.
    let day = TimeWindow::parse(Some("2026-11-23"), Some("2026-11-23")).unwrap();
    assert_eq!(day.to.as_deref(), Some("2026-11-24T00:00:00.000Z"));
    // The last day of the calendar leaves the window open at the end.
    let last = TimeWindow::parse(None, Some("9999-12-31")).unwrap();
    assert_eq!(last.to, None);
}

#[test]
fn timestamps_are_converted_to_utc_and_cover_their_millisecond() {
    let w = TimeWindow::parse(
        Some("2026-11-23T23:30:00.1239+02:00"),
        Some("2026-11-23T10:21:03Z"),
    );
    // 21:30:00.123Z is after 10:21:03Z: nothing could match.
    assert!(matches!(w, Err(WindowError::Empty { .. })), "{w:?}");
    let w = TimeWindow::parse(
        Some("2026-11-23T08:30:00.1239+02:00"),
        Some("2026-11-23t10:21:03z"),
    )
    .unwrap();
    assert_eq!(w.from.as_deref(), Some("2026-11-23T06:30:00.123Z"));
    assert_eq!(w.to.as_deref(), Some("2026-11-23T10:21:03.001Z"));
    assert_eq!(
        TimeWindow::parse(None, None).unwrap(),
        TimeWindow::default()
    );
}

#[test]
fn bad_dates_are_refused_with_the_flag() {
    for bad in [
        "2026-13-01",
        "2026-02-30",
        "23.11.2026",
        "yesterday",
        "2026-11-23 10:00",
        "2026-11-23T10:00Z",
        "",
    ] {
        let err = TimeWindow::parse(Some(bad), None).unwrap_err();
        assert_eq!(
            err,
            WindowError::Invalid {
                flag: "--since",
                text: bad.into()
            }
        );
    }
    let err = TimeWindow::parse(None, Some("soon")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--until 'soon' is neither a date (2026-11-23) nor an RFC 3339 timestamp (2026-11-23T10:00:00Z)"
    );
    let err = TimeWindow::parse(Some("2026-11-24"), Some("2026-11-23")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--since 2026-11-24 is not before --until 2026-11-23: no row can match"
    );
}

fn row(n: u64) -> ExportRow {
    ExportRow {
        run_id: 1,
        run_kind: "apply".into(),
        run_status: "completed".into(),
        run_started_at: "2026-11-23T10:00:00.000Z".into(),
        run_ended_at: None,
        operator: "TECH\\op".into(),
        server_url: "https://em/api".into(),
        plan_file: Some("plan.csv".into()),
        plan_sha256: Some("ab".into()),
        tool_version: "0.1.0".into(),
        row: RecordedRow {
            columns: RowColumns {
                row_no: n,
                line: n + 2,
                account: "TECH\\alice".into(),
                action: "assign-role".into(),
                target: "Portal User".into(),
                object_name: None,
                ticket: Some("CHG-1".into()),
                comment: Some("=1+1".into()),
                annotations: None,
            },
            account_id: None,
            end: RowResult {
                outcome: "applied".into(),
                error: None,
                prior_state: Some(r#"{"roles":[]}"#.into()),
                result: Some("not json".into()),
            },
        },
        finished_at: None,
    }
}

#[test]
fn the_json_array_is_written_row_by_row() {
    let mut writer = RowWriter::start(ExportFormat::Json, Vec::new()).unwrap();
    writer.write(&row(0)).unwrap();
    // The first row is out before the second is even read: nothing waits for the end.
    let RowWriter::Json { out, .. } = &writer else {
        unreachable!("started as JSON")
    };
    let first_len = out.len();
    let partial = String::from_utf8(out.clone()).unwrap();
    assert!(partial.starts_with("[\n{\"run_id\":1,"), "{partial}");
    assert!(partial.ends_with('}'), "{partial}");
    writer.write(&row(1)).unwrap();
    let bytes = writer.finish().unwrap();
    assert!(bytes.len() > first_len);
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let rows = value.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["row_no"], 1);
    assert_eq!(rows[0]["prior_state"], serde_json::json!({"roles": []}));
    assert_eq!(rows[0]["result"], "not json");
    assert_eq!(rows[0]["comment"], "=1+1", "JSON is not neutralised");
    assert_eq!(rows[0]["finished_at"], serde_json::Value::Null);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), EXPORT_COLUMNS.len());

    let empty = RowWriter::start(ExportFormat::Json, Vec::new())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(empty, b"[]\n");
    let value: serde_json::Value = serde_json::from_slice(&empty).unwrap();
    assert_eq!(value, serde_json::json!([]));
}

#[test]
fn json_columns_nest_their_value_on_one_line_in_column_order() {
    let mut r = row(0);
    r.row.end.prior_state = Some("{\n  \"a\": 1\n}".into());
    r.row.columns.annotations = Some("[1, 2]".into());
    r.row.end.error = Some("line one\nline \"two\"".into());
    let mut out = Vec::new();
    r.write_json(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(r#""prior_state":{"a":1}"#), "{text}");
    assert!(text.contains(r#""annotations":[1, 2]"#), "{text}");
    assert!(text.contains(r#""result":"not json""#), "{text}");
    let at: Vec<usize> = EXPORT_COLUMNS
        .iter()
        .map(|c| text.find(&format!("\"{c}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["error"], "line one\nline \"two\"");
}

#[test]
fn csv_and_jsonl_rows() {
    let mut csv = RowWriter::start(ExportFormat::Csv, Vec::new()).unwrap();
    csv.write(&row(0)).unwrap();
    let text = String::from_utf8(csv.finish().unwrap()).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        EXPORT_COLUMNS
    );
    let record = reader.records().next().unwrap().unwrap();
    let comment = EXPORT_COLUMNS.iter().position(|c| *c == "comment").unwrap();
    assert_eq!(&record[comment], "'=1+1");
    assert_eq!(&record[0], "1");
    assert_eq!(&record[EXPORT_COLUMNS.len() - 1], "");

    let mut jsonl = RowWriter::start(ExportFormat::Jsonl, Vec::new()).unwrap();
    jsonl.write(&row(0)).unwrap();
    jsonl.write(&row(1)).unwrap();
    let text = String::from_utf8(jsonl.finish().unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["line"], 3);
}

/// A log with a finished run of three rows and a second run still running with two.
async fn log(path: &Path) {
    let writer = AuditWriter::spawn(path).unwrap();
    let audit = writer.handle();
    let first = audit
        .begin_run_with_rows(new_run(), new_rows(3))
        .await
        .unwrap();
    for n in 0..3 {
        audit.row_finished(
            first,
            n,
            RowResult {
                prior_state: Some(r#"{"allow_restore_all_vms":false}"#.into()),
                ..outcome("applied")
            },
        );
    }
    audit.end_run(first, RunStatus::Completed).await.unwrap();
    audit
        .begin_run_with_rows(new_run(), new_rows(2))
        .await
        .unwrap();
    writer.close().await.unwrap();
}

fn export(reader: &AuditReader, filter: &ExportFilter) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let n = reader
        .export(filter, ExportFormat::Jsonl, &mut out)
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, n);
    rows
}

#[tokio::test]
async fn exports_rows_with_their_run_filtered_by_run_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    log(&path).await;
    let reader = AuditReader::open(&path).unwrap();

    let all = export(&reader, &ExportFilter::default());
    let keys: Vec<(i64, i64)> = all
        .iter()
        .map(|r| (r["run_id"].as_i64().unwrap(), r["row_no"].as_i64().unwrap()))
        .collect();
    assert_eq!(keys, [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]);
    assert_eq!(all[0]["operator"], "TECH\\alice");
    assert_eq!(all[0]["plan_sha256"], "ab".repeat(32));
    assert_eq!(all[0]["ticket"], "CHG-0");
    assert_eq!(all[0]["run_status"], "completed");
    assert_eq!(all[0]["prior_state"]["allow_restore_all_vms"], false);
    assert_eq!(all[3]["run_status"], "running");
    assert_eq!(all[3]["outcome"], "pending");

    let second = export(
        &reader,
        &ExportFilter {
            run_id: Some(2),
            ..ExportFilter::default()
        },
    );
    assert_eq!(second.len(), 2);

    // Move run 1's rows into the past; run 2's pending rows count at their run's start.
    edit_facts(
        &rusqlite::Connection::open(&path).unwrap(),
        "row_outcomes",
        "UPDATE row_outcomes SET finished_at = '2026-01-10T12:00:00.000Z' WHERE run_id = 1",
    );
    let window = |since: Option<&str>, until: Option<&str>| ExportFilter {
        run_id: None,
        window: TimeWindow::parse(since, until).unwrap(),
    };
    assert_eq!(export(&reader, &window(None, Some("2026-01-10"))).len(), 3);
    assert_eq!(export(&reader, &window(Some("2026-01-11"), None)).len(), 2);
    assert_eq!(
        export(
            &reader,
            &window(Some("2026-01-10T12:00:00Z"), Some("2026-01-10T12:00:00Z"))
        )
        .len(),
        3
    );
    assert_eq!(
        export(
            &reader,
            &window(Some("2026-01-10T12:00:00.001Z"), Some("2026-01-10"))
        )
        .len(),
        0
    );
}

#[tokio::test]
async fn a_crashed_run_is_exported_as_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    log(&path).await;
    let reader = AuditReader::open(&path).unwrap();
    // Run 2's writer is now a process that does not exist.
    writer_gone(&path, 2);
    let rows = export(&reader, &ExportFilter::default());
    let expected = if cfg!(target_os = "linux") {
        "crashed"
    } else {
        "running"
    };
    assert_eq!(rows[4]["run_status"], expected);
    assert_eq!(rows[0]["run_status"], "completed");
}

#[test]
fn the_query_streams_in_key_order_without_a_sort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    drop(crate::audit::db::open(&path, crate::audit::db::Durability::Full).unwrap());
    let reader = AuditReader::open(&path).unwrap();
    let window = TimeWindow::parse(Some("2026-01-01"), Some("2026-12-31")).unwrap();
    for filter in [
        ExportFilter::default(),
        ExportFilter {
            run_id: Some(1),
            window: window.clone(),
        },
        ExportFilter {
            run_id: None,
            window,
        },
    ] {
        let (sql, params) = export_query(&filter);
        // Each step: its id, its parent's and its text.
        let plan: Vec<(i64, i64, String)> = reader
            .connection()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params.as_slice(), |r| Ok((r.get(0)?, r.get(1)?, r.get(3)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let per_row = |mut parent: i64| {
            while let Some((_, up, text)) = plan.iter().find(|(id, _, _)| *id == parent) {
                if text.starts_with("CORRELATED SCALAR SUBQUERY") {
                    return true;
                }
                parent = *up;
            }
            false
        };
        // A temporary B-tree would hold every row before the first is handed over. One
        // inside a correlated subquery sorts only the records of the one row it computes a
        // value of (the newest of a row's account ids).
        assert!(
            plan.iter()
                .all(|(_, parent, step)| !step.contains("TEMP B-TREE") || per_row(*parent)),
            "{plan:#?}"
        );
    }
}

#[test]
fn output_files_are_private_and_removed_when_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.csv");
    let mut out = PrivateOutput::create(&path).unwrap();
    out.writer().write_all(b"x").unwrap();
    out.commit().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"x");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // An existing file readable by others is restricted when it is overwritten.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        PrivateOutput::create(&path).unwrap().commit().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let mut out = PrivateOutput::create(&path).unwrap();
    out.writer().write_all(b"half").unwrap();
    out.discard();
    assert!(!path.exists());
}
