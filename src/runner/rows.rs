//! A run's rows while it runs: the plan streamed into the audit log in batches, the compact
//! index of which rows belong to which account that is kept meanwhile, and where a worker gets
//! an account's jobs from when it takes the account (the jobs in memory, or the rows read back
//! from the log).
//!
//! A streamed run keeps no row in memory: the index holds one key and the row numbers per
//! account, and a worker holds one account's rows only while it works on them.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex as StdMutex};

use uuid::Uuid;

use crate::audit::{AuditHandle, NewRun, RecordedRow, RowBatch, RunRows};
use crate::plan::{AccountRef, PlanError, PlanErrors, PlanRow};

use super::{Job, RunError, new_row};

/// Plan rows, validated one at a time as they are read; an `Err` item reports problems, and a
/// run whose stream yields one is not started.
pub type RowStream = Box<dyn Iterator<Item = Result<PlanRow, PlanErrors>> + Send>;

/// Rows per batch sent to the audit writer: large enough that the handover costs nothing per
/// row, small enough that the batches in flight are a few megabytes.
const BATCH: usize = 4096;

/// Batches waiting for the writer at most, besides the one it is writing and the one being
/// filled.
const BATCHES_IN_FLIGHT: usize = 2;

/// The rows of an `apply` run, streamed from its plan instead of held in memory.
pub struct PlanStream {
    /// The rows, in plan order.
    pub rows: RowStream,
    /// How many rows the plan was validated with; a stream that yields another number (the file
    /// changed since) is refused.
    pub count: u64,
}

impl std::fmt::Debug for PlanStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanStream")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// One account's rows, in plan order: positions in the run's [`JobSource`].
#[derive(Debug)]
pub(super) struct AccountGroup {
    /// The account's GUID, once known.
    pub id: Option<Uuid>,
    /// The name the plan first gave the account, when its first row named it by name.
    pub name: Option<Box<str>>,
    /// The rows, in plan order.
    pub rows: Vec<u64>,
}

impl AccountGroup {
    /// The account as the plan first named it, for messages. Made when needed rather than
    /// kept, since most accounts never need it.
    pub fn label(&self) -> String {
        match (&self.name, self.id) {
            (Some(name), _) => name.to_string(),
            (None, Some(id)) => id.to_string(),
            (None, None) => String::new(),
        }
    }
}

/// An account as rows name it: rows naming the same GUID, or the same name in any case, share
/// one entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Id(Uuid),
    /// The name, lower-cased.
    Name(Box<str>),
}

/// The rows of one key, with the name as its first row wrote it.
#[derive(Debug)]
struct Entry {
    key: Key,
    label: Option<Box<str>>,
    rows: Vec<u64>,
}

/// Which rows name which account, in the order accounts first appear; built as rows go past.
#[derive(Debug, Default)]
pub(super) struct AccountIndex {
    slots: HashMap<Key, usize>,
    entries: Vec<Entry>,
    rows: u64,
}

impl AccountIndex {
    /// Notes that the row at `position` names `account`; positions come in plan order.
    pub(super) fn push(&mut self, position: u64, account: &AccountRef) {
        let (key, label) = match account {
            AccountRef::Id(id) => (Key::Id(*id), None),
            AccountRef::Name(name) => (
                Key::Name(name.to_lowercase().into_boxed_str()),
                Some(name.as_str()),
            ),
        };
        let entries = &mut self.entries;
        let slot = *self.slots.entry(key).or_insert_with_key(|key| {
            entries.push(Entry {
                key: key.clone(),
                label: label.map(Box::from),
                rows: Vec::new(),
            });
            entries.len() - 1
        });
        self.entries[slot].rows.push(position);
        self.rows += 1;
    }

    /// The rows noted.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether some row names its account by name, so the account list must be read.
    pub(super) fn names_needed(&self) -> bool {
        self.entries.iter().any(|e| matches!(e.key, Key::Name(_)))
    }

    /// The groups of rows by the account they resolve to (`by_name`: lower-cased names to
    /// GUIDs), keeping plan order within each account and ordering accounts by their first row.
    /// Rows naming an unknown account are grouped by that name so they fail together.
    pub(super) fn into_groups(self, by_name: &HashMap<String, Uuid>) -> Vec<AccountGroup> {
        let AccountIndex { slots, entries, .. } = self;
        // The lookup table is not needed any more; freed first, it is not held beside the
        // groups being built.
        drop(slots);
        let mut groups: Vec<AccountGroup> = Vec::with_capacity(entries.len());
        let mut merged = vec![false; entries.len()];
        let mut by_id: HashMap<Uuid, usize> = HashMap::new();
        for entry in entries {
            let (id, name) = match &entry.key {
                Key::Id(id) => (Some(*id), None),
                Key::Name(lower) => (by_name.get(&**lower).copied(), entry.label),
            };
            // Entries come in order of their first rows, so the group an entry joins started
            // earlier and keeps its place and label.
            if let Some(id) = id
                && let Some(&slot) = by_id.get(&id)
            {
                groups[slot].rows.extend(entry.rows);
                merged[slot] = true;
                continue;
            }
            if let Some(id) = id {
                by_id.insert(id, groups.len());
            }
            groups.push(AccountGroup {
                id,
                name,
                rows: entry.rows,
            });
        }
        for (group, merged) in groups.iter_mut().zip(merged) {
            if merged {
                group.rows.sort_unstable();
            }
        }
        groups
    }
}

/// Where a run's workers get an account's jobs.
#[derive(Debug)]
pub(super) enum JobSource {
    /// Jobs built in memory (replay, undo, resume); positions are indexes into them.
    Memory(Vec<Job>),
    /// Rows recorded in the audit log (apply); positions are row numbers.
    Recorded(Arc<RunRows>),
}

impl JobSource {
    /// The row number of the row at `position`.
    fn row_no(&self, position: u64) -> u64 {
        match self {
            JobSource::Memory(jobs) => jobs[index(position)].row_no,
            JobSource::Recorded(_) => position,
        }
    }

    /// The jobs of each group, in the groups' order and each in its rows' order; an `Err` says
    /// why a group's rows cannot be read back. Recorded rows are read in one query for all the
    /// groups, so a worker pays for a read of the log once per batch of accounts, not once per
    /// account.
    async fn jobs_of(&self, groups: &[AccountGroup]) -> Vec<Result<Vec<Job>, String>> {
        match self {
            JobSource::Memory(jobs) => groups
                .iter()
                .map(|g| Ok(g.rows.iter().map(|&p| jobs[index(p)].clone()).collect()))
                .collect(),
            JobSource::Recorded(rows) => {
                let mut wanted: Vec<u64> =
                    groups.iter().flat_map(|g| g.rows.iter().copied()).collect();
                wanted.sort_unstable();
                wanted.dedup();
                let rows = rows.clone();
                let fetched = tokio::task::spawn_blocking(move || rows.fetch(&wanted))
                    .await
                    .map_err(|e| format!("read the recorded rows: {e}"))
                    .and_then(|r| r.map_err(|e| format!("read the recorded rows: {e}")));
                let recorded = match fetched {
                    Ok(recorded) => recorded,
                    Err(why) => return groups.iter().map(|_| Err(why.clone())).collect(),
                };
                groups
                    .iter()
                    .map(|g| {
                        g.rows
                            .iter()
                            .map(|&row_no| {
                                let at = recorded
                                    .binary_search_by_key(&row_no, |r| r.columns.row_no)
                                    .expect(
                                        "RunRows::fetch answers every row asked for, in \
                                         ascending order, or fails",
                                    );
                                job_of(&recorded[at])
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

/// A recorded row as a job of the run it belongs to.
pub(super) fn job_of(rec: &RecordedRow) -> Result<Job, String> {
    let row_no = rec.columns.row_no;
    let row = rec
        .columns
        .plan_row()
        .map_err(|e| format!("read back recorded row {row_no}: {e}"))?;
    Ok(Job {
        row_no,
        row,
        guard: None,
        maybe_sent: false,
        account_settings: None,
    })
}

/// Accounts read ahead at most: one query of the log serves this many accounts, and their rows
/// are all a run holds besides the ones being worked on.
const READ_AHEAD: usize = 128;

/// An account taken from the queue, with its jobs (or why they could not be read).
pub(super) type TakenAccount = (AccountGroup, Result<Vec<Job>, String>);

/// The accounts of a run not yet taken by a worker, in order of their first rows, with the jobs
/// of the next few already read.
#[derive(Debug)]
pub(super) struct AccountQueue {
    source: JobSource,
    waiting: StdMutex<VecDeque<AccountGroup>>,
    /// Accounts whose jobs were read, ahead of `waiting`. The lock is held while a batch is
    /// read, so a worker that finds it empty waits for that batch instead of reading its own.
    ready: tokio::sync::Mutex<VecDeque<TakenAccount>>,
}

impl AccountQueue {
    pub(super) fn new(source: JobSource, groups: Vec<AccountGroup>) -> AccountQueue {
        AccountQueue {
            source,
            waiting: StdMutex::new(VecDeque::from(groups)),
            ready: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// The next account, with its jobs; `None` when every account was taken.
    pub(super) async fn next(&self) -> Option<TakenAccount> {
        let mut ready = self.ready.lock().await;
        if let Some(taken) = ready.pop_front() {
            return Some(taken);
        }
        let batch: Vec<AccountGroup> = {
            let mut waiting = self.waiting.lock().expect("queue lock is never poisoned");
            let n = waiting.len().min(READ_AHEAD);
            waiting.drain(..n).collect()
        };
        if batch.is_empty() {
            return None;
        }
        let jobs = self.source.jobs_of(&batch).await;
        ready.extend(batch.into_iter().zip(jobs));
        ready.pop_front()
    }

    /// Puts back the rest of an account a worker stopped working on, to be taken first.
    pub(super) fn put_back(&self, group: AccountGroup) {
        self.waiting
            .lock()
            .expect("queue lock is never poisoned")
            .push_front(group);
    }

    /// The row numbers of `group`'s rows, for recording them without their jobs (when these
    /// could not be read).
    pub(super) fn row_nos(&self, group: &AccountGroup) -> Vec<u64> {
        group.rows.iter().map(|&p| self.source.row_no(p)).collect()
    }

    /// The row numbers of every row not taken, once the workers are gone.
    pub(super) fn leftover(&self) -> Vec<u64> {
        let mut positions = Vec::new();
        if let Ok(mut ready) = self.ready.try_lock() {
            positions.extend(ready.drain(..).flat_map(|(g, _)| g.rows));
        }
        let mut waiting = self.waiting.lock().expect("queue lock is never poisoned");
        positions.extend(waiting.drain(..).flat_map(|g| g.rows));
        positions
            .into_iter()
            .map(|p| self.source.row_no(p))
            .collect()
    }
}

/// A position as an index into jobs held in memory.
fn index(position: u64) -> usize {
    usize::try_from(position).expect("positions of jobs in memory are indexes of a Vec")
}

/// Records `run` with the rows of `stream`, batch by batch in one transaction, and answers the
/// run's id with the index of its rows. A stream that yields problems records nothing:
/// [`RunError::Plan`] lists every problem it yielded.
pub(super) async fn record_streamed(
    audit: &AuditHandle,
    run: NewRun,
    stream: PlanStream,
    file: Option<String>,
) -> Result<(i64, AccountIndex), RunError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
    // Reading a plan is blocking work, and so is waiting for room in the channel.
    let feeder = tokio::task::spawn_blocking(move || feed(stream, tx, file.as_deref()));
    let recorded = audit.begin_run_streamed(run, rx).await;
    let fed = match feeder.await {
        Ok(fed) => fed,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    match (recorded, fed) {
        (_, Err(Fed::Problems(errors))) => Err(RunError::Plan(errors)),
        (Err(e), _) => Err(RunError::from(e)),
        (Ok(Some(run_id)), Ok(index)) => Ok((run_id, index)),
        // The writer stopped taking the rows without failing the record: only a writer that
        // was closed meanwhile does that.
        (Ok(_), _) => Err(RunError::Audit(crate::audit::AuditError::WriterGone(
            "the run's rows were not recorded".into(),
        ))),
    }
}

/// Why feeding the rows stopped.
enum Fed {
    /// The stream yielded problems (all of them, collected to its end).
    Problems(PlanErrors),
    /// The writer stopped taking batches.
    WriterGone,
}

/// Sends the rows of `stream` to the writer in batches while noting their accounts; on the
/// first problem it abandons the recording and collects the rest of the stream's problems.
fn feed(
    mut stream: PlanStream,
    tx: SyncSender<RowBatch>,
    file: Option<&str>,
) -> Result<AccountIndex, Fed> {
    let mut index = AccountIndex::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut failed = None;
    for (position, item) in stream.rows.by_ref().enumerate() {
        let position = position as u64;
        match item {
            Ok(row) => {
                index.push(position, &row.account);
                batch.push(new_row(position, &row));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    tx.send(RowBatch::Rows(full)).map_err(|_| Fed::WriterGone)?;
                }
            }
            Err(errors) => {
                failed = Some(errors);
                break;
            }
        }
    }
    if let Some(mut errors) = failed {
        // Dropping the sender without `End` makes the writer take back what it wrote.
        drop(tx);
        for item in stream.rows {
            if let Err(more) = item {
                errors.0.extend(more.0);
            }
        }
        return Err(Fed::Problems(errors));
    }
    if index.rows() != stream.count {
        drop(tx);
        return Err(Fed::Problems(PlanErrors(vec![PlanError {
            file: file.unwrap_or("the plan").to_string(),
            line: 0,
            message: format!(
                "the plan changed while it was read: {} rows were validated, {} were read",
                stream.count,
                index.rows()
            ),
        }])));
    }
    if !batch.is_empty() {
        tx.send(RowBatch::Rows(batch))
            .map_err(|_| Fed::WriterGone)?;
    }
    tx.send(RowBatch::End).map_err(|_| Fed::WriterGone)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, RoleRef};

    fn row(line: u64, account: AccountRef) -> PlanRow {
        PlanRow {
            line,
            account,
            action: Action::AssignRole(RoleRef::Name("Portal User".into())),
            ticket: None,
            comment: None,
            annotations: Vec::new(),
        }
    }

    #[test]
    fn groups_merge_names_and_guids_of_one_account_in_row_order() {
        let alice = Uuid::from_u128(1);
        let bob = Uuid::from_u128(2);
        let by_name = HashMap::from([
            ("tech\\alice".to_string(), alice),
            ("tech\\bob".to_string(), bob),
        ]);
        let mut index = AccountIndex::default();
        let rows = [
            AccountRef::Id(bob),
            AccountRef::Name("TECH\\alice".into()),
            AccountRef::Name("tech\\BOB".into()),
            AccountRef::Id(alice),
            AccountRef::Id(bob),
            AccountRef::Name("Tech\\Alice".into()),
        ];
        for (i, account) in rows.iter().enumerate() {
            index.push(i as u64, account);
        }
        assert!(index.names_needed());
        assert_eq!(index.rows(), 6);
        let groups = index.into_groups(&by_name);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].id, Some(bob));
        assert_eq!(groups[0].label(), bob.to_string());
        assert_eq!(groups[0].rows, vec![0, 2, 4]);
        assert_eq!(groups[1].id, Some(alice));
        assert_eq!(groups[1].label(), "TECH\\alice");
        assert_eq!(groups[1].rows, vec![1, 3, 5]);
    }

    #[test]
    fn rows_naming_an_unknown_account_in_any_case_form_one_group_in_plan_order() {
        let alice = Uuid::from_u128(1);
        let by_name = HashMap::from([("tech\\alice".to_string(), alice)]);
        let rows = [
            row(2, AccountRef::Name("TECH\\alice".into())),
            row(3, AccountRef::Name("TECH\\ghost".into())),
            row(4, AccountRef::Id(alice)),
            row(5, AccountRef::Name("tech\\GHOST".into())),
        ];
        let mut index = AccountIndex::default();
        for (i, row) in rows.iter().enumerate() {
            index.push(i as u64, &row.account);
        }
        let groups = index.into_groups(&by_name);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].id, Some(alice));
        assert_eq!(groups[0].rows, vec![0, 2]);
        assert_eq!(groups[1].id, None);
        assert_eq!(groups[1].rows, vec![1, 3]);
        // The failure names the account as its first row wrote it.
        assert_eq!(groups[1].label(), "TECH\\ghost");
    }

    #[test]
    fn guids_alone_need_no_account_list() {
        let mut index = AccountIndex::default();
        index.push(0, &AccountRef::Id(Uuid::from_u128(7)));
        assert!(!index.names_needed());
    }

    fn job(row_no: u64) -> Job {
        Job {
            row_no,
            row: row(row_no + 2, AccountRef::Id(Uuid::from_u128(row_no.into()))),
            guard: None,
            maybe_sent: false,
            account_settings: None,
        }
    }

    fn group(rows: Vec<u64>) -> AccountGroup {
        AccountGroup {
            id: None,
            name: None,
            rows,
        }
    }

    fn row_nos(taken: &TakenAccount) -> Vec<u64> {
        taken.1.as_ref().unwrap().iter().map(|j| j.row_no).collect()
    }

    #[tokio::test]
    async fn the_queue_hands_out_accounts_in_order_with_their_jobs_and_keeps_what_is_left() {
        // Job k has row number k, so positions and row numbers agree.
        let source = JobSource::Memory((0..2 * READ_AHEAD as u64 + 3).map(job).collect());
        // Account k has rows k and k + READ_AHEAD + 3 (positions in the jobs).
        let groups = (0..READ_AHEAD as u64)
            .map(|k| group(vec![k, k + READ_AHEAD as u64 + 3]))
            .chain(std::iter::once(group(vec![
                READ_AHEAD as u64,
                READ_AHEAD as u64 + 1,
            ])))
            .collect();
        let queue = AccountQueue::new(source, groups);
        let first = queue.next().await.unwrap();
        assert_eq!(row_nos(&first), vec![0, READ_AHEAD as u64 + 3]);
        let second = queue.next().await.unwrap();
        assert_eq!(row_nos(&second), vec![1, READ_AHEAD as u64 + 4]);
        // A worker that stops puts the rest of its account back, to be run first.
        queue.put_back(group(vec![READ_AHEAD as u64 + 4]));
        // The accounts read ahead, the one put back and the last one are all left over.
        let left = queue.leftover();
        assert_eq!(left.len(), 2 * (READ_AHEAD - 2) + 1 + 2);
        assert!(left.contains(&(READ_AHEAD as u64 + 4)));
        assert!(left.contains(&(READ_AHEAD as u64 + 1)));
        assert!(queue.next().await.is_none());
    }

    #[tokio::test]
    async fn accounts_read_from_the_log_in_one_batch_get_their_own_rows() {
        let (_dir, path, writer, run_id) = crate::audit::fixtures::log_with_run(6).await;
        let source = JobSource::Recorded(Arc::new(RunRows::open(&path, run_id).unwrap()));
        let got = source
            .jobs_of(&[group(vec![1, 4]), group(vec![0, 2, 5]), group(vec![3, 9])])
            .await;
        let rows = |r: &Result<Vec<Job>, String>| -> Vec<u64> {
            r.as_ref().unwrap().iter().map(|j| j.row_no).collect()
        };
        // Row 9 was never recorded: the whole batch is refused rather than guessed at.
        assert!(got.iter().all(|r| r.is_err()), "{got:?}");
        let got = source
            .jobs_of(&[group(vec![1, 4]), group(vec![0, 2, 5])])
            .await;
        assert_eq!(rows(&got[0]), vec![1, 4]);
        assert_eq!(rows(&got[1]), vec![0, 2, 5]);
        writer.close().await.unwrap();
    }

    fn plan_rows(n: u64) -> Vec<PlanRow> {
        (0..n)
            .map(|i| row(i + 2, AccountRef::Name(format!("TECH\\u{}", i % 3))))
            .collect()
    }

    #[test]
    fn feeding_sends_every_row_in_batches_and_ends() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let rows = plan_rows(BATCH as u64 + 5);
        let count = rows.len() as u64;
        let stream = PlanStream {
            rows: Box::new(rows.into_iter().map(Ok)),
            count,
        };
        let reader = std::thread::spawn(move || rx.iter().collect::<Vec<RowBatch>>());
        let index = feed(stream, tx, None).ok().unwrap();
        let batches = reader.join().unwrap();
        assert_eq!(batches.len(), 3);
        assert!(matches!(&batches[0], RowBatch::Rows(r) if r.len() == BATCH));
        assert!(
            matches!(&batches[1], RowBatch::Rows(r) if r.len() == 5 && r[4].row_no == count - 1)
        );
        assert!(matches!(batches[2], RowBatch::End));
        assert_eq!(index.rows(), count);
        assert_eq!(index.into_groups(&HashMap::new()).len(), 3);
    }

    #[test]
    fn a_problem_abandons_the_batches_and_every_problem_is_collected() {
        let problem = |line| {
            PlanErrors(vec![PlanError {
                file: "p.csv".into(),
                line,
                message: "wrong".into(),
            }])
        };
        let items: Vec<Result<PlanRow, PlanErrors>> = vec![
            Ok(row(2, AccountRef::Name("a".into()))),
            Err(problem(3)),
            Ok(row(4, AccountRef::Name("a".into()))),
            Err(problem(5)),
        ];
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let stream = PlanStream {
            rows: Box::new(items.into_iter()),
            count: 4,
        };
        let Err(Fed::Problems(errors)) = feed(stream, tx, None) else {
            panic!("the problems are reported");
        };
        assert_eq!(
            errors.0.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 5]
        );
        assert!(
            rx.iter().all(|b| !matches!(b, RowBatch::End)),
            "the stream is not ended"
        );
    }

    #[test]
    fn a_stream_of_another_length_than_validated_is_refused() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let stream = PlanStream {
            rows: Box::new(plan_rows(3).into_iter().map(Ok)),
            count: 4,
        };
        let Err(Fed::Problems(errors)) = feed(stream, tx, Some("p.csv")) else {
            panic!("the change is reported");
        };
        assert!(
            errors.to_string().starts_with("p.csv: the plan changed"),
            "{errors}"
        );
        assert!(rx.iter().all(|b| !matches!(b, RowBatch::End)));
    }

    #[tokio::test]
    async fn a_run_whose_stream_yields_a_problem_is_neither_recorded_nor_started() {
        use crate::audit::{AuditReader, AuditWriter};
        use crate::em::{ClientConfig, Secret, TlsOptions, Wire};
        use crate::runner::{Pace, Reporter, RunSettings, RunSpec, execute};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let writer = AuditWriter::spawn(&path).unwrap();
        let items: Vec<Result<PlanRow, PlanErrors>> = vec![
            Ok(row(2, AccountRef::Name("TECH\\a".into()))),
            Err(PlanErrors(vec![PlanError {
                file: "p.csv".into(),
                line: 3,
                message: "empty account".into(),
            }])),
        ];
        let spec = RunSpec::apply_stream(
            "p.csv".into(),
            "ab".repeat(32),
            2,
            Box::new(items.into_iter()),
        );
        // Nothing may be sent, so the server is never asked: port 9 of loopback is not listened on.
        let settings = RunSettings {
            client: ClientConfig::new(
                url::Url::parse("https://127.0.0.1:9/api").unwrap(),
                "TECH\\admin".into(),
                Secret::new("unused".into()),
                Wire::Xml,
                TlsOptions::default(),
            ),
            pace: Pace::default(),
            max_failures: None,
            options_json: "{}".into(),
        };
        let result = execute(
            spec,
            settings,
            writer.handle(),
            tokio_util::sync::CancellationToken::new(),
            Reporter::Quiet,
        )
        .await;
        let Err(RunError::Plan(errors)) = result else {
            panic!("the plan's problem is reported: {result:?}");
        };
        assert_eq!(errors.0[0].line, 3);
        writer.close().await.unwrap();
        let reader = AuditReader::open(&path).unwrap();
        assert!(reader.runs().unwrap().is_empty(), "no run is recorded");
    }
}
