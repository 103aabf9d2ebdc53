//! A 5,000-row run under every fault at once, then its undo: every row ends applied or in
//! place, nothing is applied twice, and the undo puts every account back as it was.

use embatch::audit::{AuditReader, AuditWriter, RunSelector};
use embatch::em::Wire;
use embatch::emulator::{EmulatorConfig, Faults};
use embatch::runner::{self, Reporter, RunSettings, history};
use tokio_util::sync::CancellationToken;

use crate::support;
use crate::workload::Workload;

fn faults() -> Faults {
    Faults {
        error_500: 0.10,
        error_429: 0.05,
        // Retry-After: 0 keeps the soak quick; the pool-wide pause a longer Retry-After
        // imposes is tested on its own (apply::throttling_and_server_errors_...).
        retry_after_secs: 0,
        drop_before: 0.01,
        drop_after: 0.01,
        expire_after: Some(300),
        seed: Some(5000),
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_rows_under_every_fault_then_an_exact_undo() {
    let emu = support::emulator(EmulatorConfig {
        accounts: 1300,
        ..EmulatorConfig::default()
    })
    .await;
    let work = Workload::new(emu.state(), 1250);
    emu.set_faults(faults());
    let mut pace = support::fast_pace();
    pace.concurrency = 16;
    pace.max_attempts = 12;

    let run = support::apply(&emu, &work.csv, Wire::Json, pace.clone()).await;
    let outcomes = run.outcomes();
    assert_eq!(outcomes.len(), 5000);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, runner::Outcome::Applied | runner::Outcome::Noop)),
        "{:?}",
        run.errors()
            .into_iter()
            .flatten()
            .take(5)
            .collect::<Vec<_>>()
    );
    let received = emu.requests();
    for status in [500, 429, 401] {
        assert!(
            received.iter().any(|r| r.status == Some(status)),
            "{status} was injected"
        );
    }
    assert!(
        received.iter().any(|r| r.dropped),
        "connections were dropped"
    );
    assert_eq!(support::accesses(&emu.state()), work.desired());
    work.assert_exactly_once(&emu.journal());

    // Undo, under the same faults.
    let reader = AuditReader::open(&run.db()).unwrap();
    let source = reader.run(RunSelector::Id(run.report.run_id)).unwrap();
    let undo = history::undo(&reader, &source).unwrap();
    assert!(
        undo.irreversible.is_empty(),
        "{:?}",
        &undo.irreversible[..undo.irreversible.len().min(3)]
    );
    drop(reader);
    let writer = AuditWriter::spawn(&run.db()).unwrap();
    let settings = RunSettings {
        client: support::client_config(&emu, Wire::Xml),
        pace,
        max_failures: None,
        options_json: "{}".into(),
    };
    let report = runner::execute(
        undo.spec,
        settings,
        writer.handle(),
        CancellationToken::new(),
        Reporter::Quiet,
    )
    .await
    .unwrap();
    writer.close().await.unwrap();
    assert_eq!(report.unsuccessful(), 0, "{:?}", report.summary);
    assert_eq!(
        support::accesses(&emu.state()),
        support::accesses(&work.before),
        "the undo restored every account exactly"
    );
}
