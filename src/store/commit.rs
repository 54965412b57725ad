//! Group commit: many concurrent writers share one flush + fsync.
//!
//! A writer finishes its sled writes, takes a ticket, and waits until a flush
//! that *started after* its ticket has completed. One flusher thread runs
//! flushes back to back, each covering every ticket taken before it began, so
//! with N requests in flight the disk sees about one sync per batch instead of N.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

/// How far flushing has got: every ticket `<= done` is durable; every ticket
/// `<= failed` (and `> done` at the time) belonged to a flush that failed.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    done: u64,
    failed: u64,
    /// Flushes run so far.
    flushes: u64,
}

struct Shared {
    /// The last ticket handed out, and whether the flusher should stop.
    queue: Mutex<(u64, bool)>,
    wake: Condvar,
}

/// A place in the flush queue, from [`GroupCommit::ticket`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// Shares flushes between concurrent writers of one sled database.
pub struct GroupCommit {
    shared: Arc<Shared>,
    progress: watch::Receiver<Progress>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread. `db_file` is sled's log file, which is
    /// `fsync`ed after every flush: sled's own flush only uses `sync_file_range`,
    /// which does not make file metadata durable.
    pub fn start(db: sled::Db, db_file: File) -> std::io::Result<GroupCommit> {
        let shared = Arc::new(Shared {
            queue: Mutex::new((0, false)),
            wake: Condvar::new(),
        });
        let (tx, rx) = watch::channel(Progress::default());
        let thread_shared = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flush_loop(&thread_shared, &db, &db_file, &tx))?;
        Ok(GroupCommit {
            shared,
            progress: rx,
            flusher: Mutex::new(Some(flusher)),
        })
    }

    /// Returns once everything this task wrote before calling is on disk.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let ticket = self.ticket()?;
        self.wait(ticket).await
    }

    /// Marks everything written so far as due for a flush; [`Self::wait`] on
    /// the ticket returns once it is on disk. Taking the ticket and waiting
    /// are separate so that a writer thread can hand its waiting to callers.
    pub fn ticket(&self) -> Result<Ticket, StoreError> {
        let ticket = {
            let mut q = self
                .shared
                .queue
                .lock()
                .map_err(|_| StoreError::Stopped("flusher"))?;
            if q.1 {
                return Err(StoreError::Closing);
            }
            q.0 += 1;
            q.0
        };
        self.shared.wake.notify_one();
        Ok(Ticket(ticket))
    }

    /// Waits until a flush that started after `ticket` was taken has finished.
    pub async fn wait(&self, ticket: Ticket) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let mut rx = self.progress.clone();
        let result = rx
            .wait_for(|p| p.done >= ticket.0 || p.failed >= ticket.0)
            .await
            .map_err(|_| StoreError::Stopped("flusher"))
            .and_then(|p| {
                if p.done >= ticket.0 {
                    Ok(())
                } else {
                    Err(StoreError::Flush)
                }
            });
        crate::telemetry::STORE
            .with_label_values(&["commit"])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Whether the last flush succeeded (a failed one means writes cannot be
    /// made durable, so the gate should not be called healthy).
    pub fn healthy(&self) -> bool {
        let p = *self.progress.borrow();
        p.failed <= p.done
    }

    /// How many flushes have run.
    pub fn flush_count(&self) -> u64 {
        self.progress.borrow().flushes
    }

    /// Flushes what is pending, then stops the flusher thread.
    pub fn stop(&self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.1 = true;
        }
        self.shared.wake.notify_all();
        let handle = self.flusher.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flush_loop(shared: &Shared, db: &sled::Db, db_file: &File, tx: &watch::Sender<Progress>) {
    let mut progress = Progress::default();
    loop {
        let (target, stopping) = {
            let Ok(mut q) = shared.queue.lock() else {
                return;
            };
            while q.0 <= progress.done.max(progress.failed) && !q.1 {
                q = match shared.wake.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
            (q.0, q.1)
        };
        if target > progress.done.max(progress.failed) {
            match db
                .flush()
                .map_err(|e| e.to_string())
                .and_then(|_| db_file.sync_all().map_err(|e| e.to_string()))
            {
                Ok(()) => progress.done = target,
                Err(e) => {
                    log::error!("flushing the store failed: {e}");
                    progress.failed = target;
                }
            }
            progress.flushes += 1;
            tx.send_replace(progress);
        }
        if stopping {
            return;
        }
    }
}
