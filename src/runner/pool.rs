//! The one scheduling loop of the runner: a bounded pool that keeps at most `limit` items of
//! work going at once, each on a task of its own, over a source of items, until the source is
//! empty or the pool is cancelled. `apply` (and replay, undo, resume) runs its accounts through
//! it, the online preview its predictions, and `snapshot` its reads.
//!
//! A panic is a bug, and what the work it hit left behind is unknown: it is caught, the pool
//! stops taking items (it cancels its token, so work under way that watches the token stops at
//! its next safe point), and the first panic's message is the pool's answer once the work under
//! way has ended. Work is never aborted half-way: a row whose request is in flight is finished
//! and recorded, as the log's invariants ask.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A bounded pool of tasks over a source of work items.
#[derive(Clone, Debug)]
pub(super) struct Pool {
    /// Items in work at most at once; at least 1.
    pub(super) limit: usize,
    /// Stops the pool taking items when cancelled (Ctrl-C, `--max-failures`, a failed log). The
    /// pool cancels it itself on a panic, so work watching it stops too.
    pub(super) cancel: CancellationToken,
}

impl Pool {
    /// Takes items from `take` while fewer than `limit` are in work and the pool is not
    /// cancelled, starts each as `start` makes it, and hands each answer to `done` as it comes,
    /// in the order the items end. `take` answers `None` when it has no more items, and is not
    /// called again. `take` and `done` run on the caller's task, so they may borrow; `start`
    /// only builds the item's work, which runs on a task of its own.
    ///
    /// Answers, once every item taken has ended, the message of the first panic of the work or
    /// of `take`, if one panicked. The items never taken stay with the source.
    pub(super) async fn run<T, Take, TakeFut, Start, Work>(
        &self,
        mut take: Take,
        mut start: Start,
        mut done: impl FnMut(Work::Output),
    ) -> Result<(), String>
    where
        Take: FnMut() -> TakeFut,
        TakeFut: Future<Output = Option<T>>,
        Start: FnMut(T) -> Work,
        Work: Future + Send + 'static,
        Work::Output: Send + 'static,
    {
        debug_assert!(self.limit > 0, "a pool of no workers does no work");
        let mut tasks = JoinSet::new();
        let mut panicked: Option<String> = None;
        let mut empty = false;
        loop {
            while !empty && tasks.len() < self.limit && !self.cancel.is_cancelled() {
                // `take` and `start` run here, and a panic in them is caught like one of the
                // work: it stops the pool instead of unwinding through the caller.
                match caught(async { take().await }).await {
                    Ok(Some(item)) => {
                        match std::panic::catch_unwind(AssertUnwindSafe(|| start(item))) {
                            Ok(work) => {
                                // The task stops the pool itself, so that the work under way
                                // stops at once, not once this loop has heard of the panic.
                                let cancel = self.cancel.clone();
                                tasks.spawn(async move {
                                    let answer = caught(work).await;
                                    if answer.is_err() {
                                        cancel.cancel();
                                    }
                                    answer
                                });
                            }
                            Err(payload) => self.stop(&mut panicked, panic_text(payload.as_ref())),
                        }
                    }
                    Ok(None) => empty = true,
                    Err(why) => self.stop(&mut panicked, why),
                }
            }
            let Some(ended) = tasks.join_next().await else {
                break;
            };
            // A task that ends without an answer panicked outside `caught` (it never does) or
            // was aborted (nothing aborts it): either way, a bug.
            match ended.unwrap_or_else(|e| Err(join_text(e))) {
                Ok(answer) => done(answer),
                Err(why) => self.stop(&mut panicked, why),
            }
        }
        panicked.map_or(Ok(()), Err)
    }

    /// Notes the first panic and stops taking items.
    fn stop(&self, panicked: &mut Option<String>, why: String) {
        panicked.get_or_insert(why);
        self.cancel.cancel();
    }
}

/// Runs `future`, turning a panic in it into the panic's message. Unwind safety is asserted
/// because after a panic nothing more is decided from what the future shared: the pool stops,
/// and for a run the rows stay as the log holds them.
async fn caught<F: Future>(future: F) -> Result<F::Output, String> {
    use futures_util::FutureExt as _;
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| panic_text(payload.as_ref()))
}

/// The message a panic carried, when it was text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(text) => format!("panicked: {text}"),
        None => match payload.downcast_ref::<String>() {
            Some(text) => format!("panicked: {text}"),
            None => "panicked".into(),
        },
    }
}

/// Why a task ended without an answer.
fn join_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => panic_text(payload.as_ref()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn pool(limit: usize) -> Pool {
        Pool {
            limit,
            cancel: CancellationToken::new(),
        }
    }

    /// A source over `items` for [`Pool::run`]'s `take`.
    fn source<I: Iterator>(items: &mut I) -> impl FnMut() -> std::future::Ready<Option<I::Item>> {
        move || std::future::ready(items.next())
    }

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let text = caught(async { panic!("overflow when adding duration to instant") }).await;
        assert_eq!(
            text,
            Err::<(), _>("panicked: overflow when adding duration to instant".into())
        );
        let formatted = caught(async { panic!("row {}", 3) }).await;
        assert_eq!(formatted, Err::<(), _>("panicked: row 3".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_the_limit_are_in_work_and_every_item_is_done() {
        let in_work = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut items = 0..40u32;
        let mut answers = Vec::new();
        let outcome = pool(3)
            .run(
                source(&mut items),
                |n| {
                    let (in_work, most) = (in_work.clone(), most.clone());
                    async move {
                        let now = in_work.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        in_work.fetch_sub(1, Ordering::SeqCst);
                        n * 2
                    }
                },
                |answer| answers.push(answer),
            )
            .await;
        assert_eq!(outcome, Ok(()));
        answers.sort_unstable();
        assert_eq!(answers, (0..40).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(
            most.load(Ordering::SeqCst),
            3,
            "the pool kept 3 at work, no more"
        );
    }

    #[tokio::test]
    async fn a_panic_is_reported_and_stops_the_pool_after_the_work_under_way() {
        let pool = pool(2);
        let finished = Arc::new(AtomicUsize::new(0));
        let mut items = 0..100u32;
        let outcome = pool
            .run(
                source(&mut items),
                |n| {
                    let finished = finished.clone();
                    async move {
                        if n == 3 {
                            panic!("item {n}");
                        }
                        tokio::task::yield_now().await;
                        finished.fetch_add(1, Ordering::SeqCst);
                    }
                },
                |()| {},
            )
            .await;
        assert_eq!(outcome, Err("panicked: item 3".into()));
        assert!(pool.cancel.is_cancelled(), "a panic stops the pool");
        // The items after the panic were never taken; those under way ended.
        let next = items.next().unwrap();
        assert!((4..=10).contains(&next), "taken up to {next}");
        assert_eq!(finished.load(Ordering::SeqCst), next as usize - 1);
    }

    #[tokio::test]
    async fn a_panic_of_the_source_or_of_starting_an_item_is_reported_too() {
        let mut taken = 0;
        let outcome = pool(2)
            .run(
                || {
                    taken += 1;
                    let n = taken;
                    async move {
                        assert!(n < 3, "the source broke");
                        Some(n)
                    }
                },
                |n| async move { n },
                |_| {},
            )
            .await;
        assert_eq!(outcome, Err("panicked: the source broke".into()));

        let mut items = 0..10u32;
        let outcome = pool(2)
            .run(
                source(&mut items),
                |n| {
                    assert!(n < 1, "no work for {n}");
                    async move { n }
                },
                |_| {},
            )
            .await;
        assert_eq!(outcome, Err("panicked: no work for 1".into()));
    }

    #[tokio::test]
    async fn a_cancelled_pool_takes_no_new_item() {
        let pool = pool(1);
        let mut items = 0..100u32;
        let mut answers = Vec::new();
        let cancel = pool.cancel.clone();
        let outcome = pool
            .run(
                source(&mut items),
                |n| {
                    let cancel = cancel.clone();
                    async move {
                        if n == 2 {
                            cancel.cancel();
                        }
                        n
                    }
                },
                |answer| answers.push(answer),
            )
            .await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(
            answers,
            [0, 1, 2],
            "the item under way ended; no other was taken"
        );
        assert_eq!(items.next(), Some(3), "the rest stay with the source");

        let mut items = 0..10u32;
        let outcome = pool
            .run(source(&mut items), |n| async move { n }, |_| {})
            .await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(
            items.next(),
            Some(0),
            "a pool cancelled before it starts takes nothing"
        );
    }
}
