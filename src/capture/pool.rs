//! The recording pool: a few threads, at a lower scheduling priority than
//! the forwarding runtime, that turn finished exchanges into records.
//!
//! Why: recording competes with forwarding for the same cores. On a busy
//! core, a stream that ends starts its recording (decoding, record, digest)
//! just as the agent sends its next request; at equal priority the request
//! waits. With the recording threads niced, the kernel runs forwarding first.
//!
//! Guarantees and bounds: jobs run in the order queued; the queue holds at
//! most `QUEUE` jobs and `Backlog::admit` at most `MAX_BACKLOG` exchanges between
//! their arrival and their record being queued for the journal, so when
//! recording falls behind, new requests wait for a place instead of the
//! backlog growing without bound (nothing is dropped). A job that panics
//! fails alone (its caller gets the panic message); the pool stops when the
//! last handle is dropped.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Jobs waiting for a thread.
const QUEUE: usize = 1024;
/// With this many more jobs waiting, a thread works through them without
/// yielding to forwarding (`priority::yield_point`).
const BEHIND: usize = 8;
/// Exchanges admitted and not yet handed to the journal. Every open stream
/// counts, so this is far above what agents keep open at once; it bounds
/// the memory a falling-behind recorder holds (each exchange's captured
/// bodies) to some tens of megabytes for typical requests.
pub const MAX_BACKLOG: usize = 2048;
type Job = Box<dyn FnOnce() + Send>;

pub struct RecordPool {
    jobs: mpsc::Sender<Job>,
}

/// Places for exchanges between their arrival and their record being
/// queued for the journal (`MAX_BACKLOG`).
#[derive(Clone)]
pub struct Backlog(Arc<Semaphore>);

impl Default for Backlog {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(MAX_BACKLOG)))
    }
}

/// An exchange's place in the backlog, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        crate::priority::backlog_left(1);
    }
}

impl Backlog {
    /// A place for one exchange until its record is queued for the journal.
    pub async fn admit(&self) -> Option<Admission> {
        let permit = self.0.clone().acquire_owned().await.ok()?;
        crate::priority::backlog_joined(1);
        Some(Admission { _permit: permit })
    }
}

impl RecordPool {
    /// Starts `threads` threads (at least one) named `name-N`.
    pub fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    crate::priority::lower_this_thread();
                    loop {
                        // One idle thread at a time waits for the next job;
                        // the lock is released before the job runs.
                        let (job, waiting) = {
                            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            let job = rx.blocking_recv();
                            (job, rx.len())
                        };
                        crate::priority::set_behind(waiting >= BEHIND);
                        match job {
                            Some(job) => {
                                job();
                                crate::priority::yield_point();
                            }
                            None => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a recording thread and waits for its result; `Err` with
    /// the panic message if it panicked, or if the pool is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|p| panic_message(&p));
            let _ = tx.send(result);
        });
        if self.jobs.send(job).await.is_err() {
            return Err("the recording pool has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the recording pool has stopped".into()))
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_fails_alone() {
        let pool = RecordPool::new("test", 2).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        let failed = pool.run(|| -> u32 { panic!("bad record") }).await;
        assert_eq!(failed, Err("bad record".to_owned()));
        assert_eq!(pool.run(|| "still running").await, Ok("still running"));
    }

    #[tokio::test]
    async fn admission_is_bounded_and_released() {
        let backlog = Backlog::default();
        let mut held = Vec::new();
        for _ in 0..MAX_BACKLOG {
            held.push(backlog.admit().await.unwrap());
        }
        assert!(backlog.0.clone().try_acquire_owned().is_err(), "full");
        let waiting = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.admit().await.is_some() }
        });
        held.pop();
        let admitted = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
        assert!(
            admitted.unwrap().unwrap(),
            "a place freed lets the next one in"
        );
    }
}
