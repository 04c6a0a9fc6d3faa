//! Copies the journal's write-ahead log back into the database file
//! (SQLite's WAL checkpoint, not the journal's signed checkpoints) on a
//! thread of its own at idle priority, instead of inside whichever commit
//! crosses SQLite's threshold.
//!
//! Why: the copy and its two fsyncs are one call of 1–2.5 ms that cannot
//! yield. On the journal writer it kept the forwarding thread on the same
//! core waiting for that long (a scheduler trace at 500 req/s showed it as
//! the largest part of the added p99): the scheduler lets a niced thread
//! finish a slice that long. A `SCHED_IDLE` thread is preempted as soon as
//! forwarding wakes.
//!
//! Bounds: the writer learns the WAL's size from SQLite's WAL hook on every
//! commit and wakes the copier once per `WAKE_EVERY` new pages, through a
//! one-slot channel (never blocks the writer, never queues). If the WAL
//! reaches `COPY_INLINE_AT` pages anyway (a core so busy the idle thread
//! never runs), the writer copies it itself, as SQLite would have, so the
//! WAL stays bounded.
//!
//! Failure: a copy that fails or finds another one running is left to the
//! next wake; nothing is at risk, the WAL keeps every page until copied. If
//! the thread cannot be started, the writer copies at `WAKE_EVERY` itself.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, MAIN_DB, OpenFlags};

/// Wake the copier once per this many new WAL pages (4 KB each), about
/// SQLite's own threshold. Copying less often copies less: the index pages
/// every commit rewrites are copied once per round, however many commits
/// rewrote them (measured at 2,000 req/s for 30 s: the copier's CPU 277 →
/// 197 ticks against a wake every 128 pages, the process's 2,078 → 1,970).
/// A longer round costs forwarding nothing, the copier being `SCHED_IDLE`.
const WAKE_EVERY: i32 = 1024;
/// The copier has not kept up: the writer copies (and so does any other
/// connection of ours that commits, see `leave_to_the_writer`).
const COPY_INLINE_AT: i32 = 8192;
/// Copy rounds per wake. The writer commits while the copier is preempted,
/// and a copy takes only the frames there were when it began; the WAL
/// starts over from its beginning only if the writer's next transaction
/// finds every frame copied, so the copier repeats until a round finds no
/// new frames.
const ROUNDS: usize = 8;

pub struct WalCheckpointer {
    /// Pages in the WAL after the last commit (from the WAL hook).
    pages: Arc<AtomicI32>,
    /// The WAL's size when the copier was last woken.
    woken_at: i32,
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What a commit that left `pages` in the WAL calls for.
#[derive(Debug, PartialEq, Eq)]
enum Due {
    Nothing,
    Wake,
    CopyHere,
}

fn due(pages: i32, woken_at: i32, copier: bool) -> Due {
    // A WAL smaller than at the last wake was copied and restarted.
    let new = if pages < woken_at {
        pages
    } else {
        pages - woken_at
    };
    if pages >= COPY_INLINE_AT || (!copier && new >= WAKE_EVERY) {
        Due::CopyHere
    } else if new >= WAKE_EVERY {
        Due::Wake
    } else {
        Due::Nothing
    }
}

impl WalCheckpointer {
    /// Takes over WAL checkpoints of the writer's connection to `path`
    /// (SQLite's own automatic ones stop: the hook replaces them).
    pub fn attach(conn: &mut Connection, path: &Path) -> Self {
        let pages = Arc::new(AtomicI32::new(0));
        let seen = pages.clone();
        if let Err(e) = conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
            seen.store(n, Ordering::Relaxed);
            Ok(())
        })) {
            tracing::warn!(error = %e, "journal: could not watch the WAL; SQLite checkpoints it itself");
        }
        let (wake, rx) = sync_channel(1);
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("journal-wal".into())
            .spawn(move || copy_when_woken(&path, rx));
        let (wake, thread) = match thread {
            Ok(t) => (Some(wake), Some(t)),
            Err(e) => {
                tracing::warn!(error = %e, "journal: no WAL checkpoint thread; the writer copies the WAL itself");
                (None, None)
            }
        };
        Self {
            pages,
            woken_at: 0,
            wake,
            thread,
        }
    }

    /// Called after every commit on the writer's connection.
    pub fn after_commit(&mut self, conn: &Connection) {
        let pages = self.pages.load(Ordering::Relaxed);
        match due(pages, self.woken_at, self.wake.is_some()) {
            Due::Nothing => {}
            Due::Wake => {
                self.woken_at = pages;
                if let Some(wake) = &self.wake
                    && let Err(TrySendError::Disconnected(())) = wake.try_send(())
                {
                    self.wake = None;
                }
            }
            Due::CopyHere => {
                self.woken_at = pages;
                let _ = copy(conn);
            }
        }
    }
}

impl Drop for WalCheckpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn copy_when_woken(path: &Path, rx: Receiver<()>) {
    if !crate::priority::idle_this_thread() {
        crate::priority::lower_this_thread();
    }
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "journal: the WAL checkpoint thread cannot open the journal; the writer copies the WAL itself");
            return;
        }
    };
    // A connection learns the file is in WAL mode when it first reads it;
    // until then a checkpoint does nothing.
    if let Err(e) = conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)) {
        tracing::warn!(error = %e, "journal: the WAL checkpoint thread cannot read the journal; the writer copies the WAL itself");
        return;
    }
    while rx.recv().is_ok() {
        let mut seen = None;
        for _ in 0..ROUNDS {
            let log = copy(&conn);
            if log.is_none() || log == seen {
                break;
            }
            seen = log;
        }
    }
}

/// Other connections that write to a journal (the export cursor, prune)
/// leave copying the WAL to the writer unless it has fallen far behind;
/// otherwise their small commits would do the writer's copies, on threads
/// that are not idle-priority.
pub fn leave_to_the_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", COPY_INLINE_AT)
}

/// One PASSIVE copy of the frames the WAL holds when it begins; how many
/// that was, if it copied them all.
fn copy(conn: &Connection) -> Option<i32> {
    match conn.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE) {
        Ok((log, copied)) => (copied >= log).then_some(log),
        // Another connection is copying: it does the work.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "journal WAL checkpoint failed; retried later");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_once_per_batch_of_new_pages() {
        assert_eq!(due(WAKE_EVERY - 1, 0, true), Due::Nothing);
        assert_eq!(due(WAKE_EVERY, 0, true), Due::Wake);
        // Still growing since the last wake: not again until as many more.
        assert_eq!(due(WAKE_EVERY + 10, WAKE_EVERY, true), Due::Nothing);
        assert_eq!(due(2 * WAKE_EVERY, WAKE_EVERY, true), Due::Wake);
        // Copied and restarted: counts from zero.
        assert_eq!(due(5, 2 * WAKE_EVERY, true), Due::Nothing);
        assert_eq!(due(WAKE_EVERY, 2 * WAKE_EVERY, true), Due::Wake);
    }

    #[test]
    fn copies_itself_when_the_copier_is_missing_or_behind() {
        assert_eq!(due(WAKE_EVERY, 0, false), Due::CopyHere);
        assert_eq!(due(WAKE_EVERY - 1, 0, false), Due::Nothing);
        assert_eq!(due(COPY_INLINE_AT, COPY_INLINE_AT - 1, true), Due::CopyHere);
    }

    #[test]
    fn the_copier_moves_the_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        // Thousands of commits: durability is not what this test is about.
        conn.pragma_update(None, "synchronous", "OFF").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        let mut wal = WalCheckpointer::attach(&mut conn, &path);
        let row = vec![7u8; 3000];
        let db_pages = |c: &Connection| -> i64 {
            // Pages the database file itself holds, not the WAL.
            std::fs::metadata(&path).unwrap().len() as i64
                / c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
                    .unwrap()
        };
        let before = db_pages(&conn);
        for _ in 0..(2 * WAKE_EVERY) {
            conn.execute("INSERT INTO t VALUES (?1)", [&row]).unwrap();
            wal.after_commit(&conn);
        }
        assert!(
            wal.pages.load(Ordering::Relaxed) < COPY_INLINE_AT,
            "the writer never had to copy"
        );
        // Stopping the copier lets it finish what it was woken for.
        let pages_copied_by_thread = {
            drop(wal);
            db_pages(&conn) - before
        };
        assert!(
            pages_copied_by_thread >= i64::from(WAKE_EVERY),
            "the database file grew by only {pages_copied_by_thread} pages"
        );
    }
}
