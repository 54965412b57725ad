//! Batched writes: one writer thread applies queued requests together.
//!
//! A sled transaction takes sled's global write lock and seals its IO buffer
//! twice (sled 0.34, `PageCache::pin_log`), so transactions run one at a time
//! and each costs a long wait however little it writes.
//! With one transaction per token exchange, concurrent exchanges queued on
//! that lock and durable issuance stayed below the disk's own sync rate.
//!
//! A [`Batcher`] owns one thread. Requests that arrive while it is applying a
//! batch wait in its queue, and the next batch takes all of them (up to a
//! bound) so that the caller's `apply` can write them in one transaction.
//! Every request still gets its own answer. The thread also keeps sled's
//! blocking calls off the async workers that serve traffic.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::StoreError;

/// One queued request and where its answer goes.
struct Job<R, O> {
    request: R,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

/// Applies requests of type `R` in batches on its own thread, answering each
/// with an `O` or its own error.
pub struct Batcher<R, O> {
    queue: Mutex<Option<mpsc::Sender<Job<R, O>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<R: Send + 'static, O: Send + 'static> Batcher<R, O> {
    /// Starts the writer thread. `apply` gets each batch in arrival order,
    /// at most `max_batch` long, and returns one answer (or error) per
    /// request, or one error for the whole batch (which every request in it
    /// then receives).
    pub fn start<F>(name: &str, max_batch: usize, mut apply: F) -> std::io::Result<Batcher<R, O>>
    where
        F: FnMut(&[R]) -> Result<Vec<Result<O, StoreError>>, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Job<R, O>>();
        let max_batch = max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Ends when the last sender is gone and the queue is drained.
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let (requests, replies): (Vec<R>, Vec<_>) =
                        jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
                    // A panic fails its batch, not every later request.
                    let outcome = panic::catch_unwind(AssertUnwindSafe(|| apply(&requests)))
                        .unwrap_or_else(|_| Err(StoreError::BatchFailed));
                    answer(replies, outcome);
                }
            })?;
        Ok(Batcher {
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `request` and waits for its answer.
    pub async fn submit(&self, request: R) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let queue = self
                .queue
                .lock()
                .map_err(|_| StoreError::Stopped("writer"))?;
            let Some(queue) = queue.as_ref() else {
                return Err(StoreError::Closing);
            };
            queue
                .send(Job { request, reply })
                .map_err(|_| StoreError::Stopped("writer"))?;
        }
        answer.await.map_err(|_| StoreError::Stopped("writer"))?
    }
}

impl<R, O> Batcher<R, O> {
    /// Applies what is queued, then stops the writer thread; later submits fail.
    pub fn stop(&self) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl<R, O> Drop for Batcher<R, O> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends each request its answer; a request whose caller gave up is skipped.
fn answer<O>(
    replies: Vec<oneshot::Sender<Result<O, StoreError>>>,
    outcome: Result<Vec<Result<O, StoreError>>, StoreError>,
) {
    match outcome {
        Ok(answers) => {
            let given = answers.len();
            let mut answers = answers.into_iter();
            for reply in replies {
                let one = answers.next().unwrap_or_else(|| {
                    log::error!("the store writer answered {given} requests of a batch");
                    Err(StoreError::BatchFailed)
                });
                let _ = reply.send(one);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Barrier};
    use std::task::{Context, Waker};

    #[tokio::test]
    async fn each_request_gets_its_own_answer() {
        let b = Batcher::start("test-writer", 8, |rs: &[u32]| {
            Ok(rs.iter().map(|r| Ok(r * 2)).collect())
        })
        .unwrap();
        assert_eq!(b.submit(3).await.unwrap(), 6);
        assert_eq!(b.submit(5).await.unwrap(), 10);
    }

    /// A batcher whose first batch (request 0 alone) holds the writer until
    /// released; `then` applies every later batch.
    fn held_batcher(
        then: impl Fn(&[u32]) -> Result<Vec<u32>, StoreError> + Send + 'static,
    ) -> (Batcher<u32, u32>, mpsc::Receiver<()>, Arc<Barrier>) {
        let (entered_tx, entered) = mpsc::channel();
        let release = Arc::new(Barrier::new(2));
        let r = release.clone();
        let b = Batcher::start("test-writer", 64, move |rs: &[u32]| {
            if rs == [0] {
                entered_tx.send(()).unwrap();
                r.wait();
                return Ok(vec![Ok(0)]);
            }
            then(rs).map(|answers| answers.into_iter().map(Ok).collect())
        })
        .unwrap();
        (b, entered, release)
    }

    type Pending<'a> = Pin<Box<dyn Future<Output = Result<u32, StoreError>> + 'a>>;

    /// Queues request 0, waits until the writer holds it, then queues
    /// requests 1 to `n` behind it (one poll of a submit queues its request).
    fn queue_behind_first<'a>(
        b: &'a Batcher<u32, u32>,
        entered: &mpsc::Receiver<()>,
        n: u32,
    ) -> Vec<Pending<'a>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut queued: Vec<Pending<'a>> = vec![Box::pin(b.submit(0))];
        assert!(queued[0].as_mut().poll(&mut cx).is_pending());
        entered.recv().unwrap();
        for i in 1..=n {
            let mut f: Pending<'a> = Box::pin(b.submit(i));
            assert!(f.as_mut().poll(&mut cx).is_pending());
            queued.push(f);
        }
        queued
    }

    #[tokio::test]
    async fn requests_queued_while_a_batch_runs_form_the_next_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let s = sizes.clone();
        let (b, entered, release) = held_batcher(move |rs| {
            s.lock().unwrap().push(rs.len());
            Ok(rs.to_vec())
        });
        let queued = queue_behind_first(&b, &entered, 20);
        release.wait();
        for (i, f) in queued.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), i as u32);
        }
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![20],
            "the 20 queued formed one batch"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_requests_and_a_short_answer_the_rest() {
        let (b, entered, release) = held_batcher(|rs| {
            if rs.len() > 1 {
                Err(StoreError::Flush)
            } else {
                Ok(Vec::new())
            }
        });
        let mut queued = queue_behind_first(&b, &entered, 3).into_iter();
        release.wait();
        assert_eq!(queued.next().unwrap().await.unwrap(), 0);
        for f in queued {
            assert!(matches!(f.await.unwrap_err(), StoreError::Flush));
        }
        assert!(matches!(
            b.submit(9).await.unwrap_err(),
            StoreError::BatchFailed
        ));
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_alone_and_the_writer_goes_on() {
        let b = Batcher::start("test-writer", 8, |rs: &[u32]| {
            assert_ne!(rs[0], 13, "unlucky");
            Ok(rs.iter().map(|r| Ok(*r)).collect())
        })
        .unwrap();
        assert!(matches!(
            b.submit(13).await.unwrap_err(),
            StoreError::BatchFailed
        ));
        assert_eq!(b.submit(1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn stop_answers_what_is_queued_then_refuses() {
        let (b, entered, release) = held_batcher(|rs| Ok(rs.to_vec()));
        let queued = queue_behind_first(&b, &entered, 3);
        // The writer is held mid-batch while stop closes the queue.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            release.wait();
        });
        b.stop();
        releaser.join().unwrap();
        for (i, f) in queued.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), i as u32);
        }
        assert!(matches!(
            b.submit(1).await.unwrap_err(),
            StoreError::Closing
        ));
    }
}
