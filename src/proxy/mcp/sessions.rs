//! The MCP sessions the proxy is recording, by route and session key: the
//! `Mcp-Session-Id` of Streamable HTTP, or the POST endpoint the older
//! HTTP+SSE transport announced. Every HTTP exchange of a session feeds the
//! same recorder, so a request and its response pair even when they travel
//! on different connections.
//!
//! An exchange holds its session while it runs ([`Joined`]); a session is
//! idle only when none does and none has for the idle timeout, so a long
//! tool call or an open server stream keeps it. Bounded by `MAX_SESSIONS`
//! (the least recently used idle one is closed to make room). Sessions are
//! closed — their unanswered requests recorded as such — on DELETE, when
//! idle, and at shutdown; after shutdown began, none is registered anymore.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

use crate::capture::mcp::recorder::{SessionRecorder, Sink};
use crate::capture::mcp::{SessionInfo, TRANSPORT_TCP};

const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub route: String,
    /// `sid:<Mcp-Session-Id>` or `endpoint:<path?query>`.
    pub session: String,
}

impl Key {
    pub fn session_id(route: &str, id: &str) -> Self {
        Self {
            route: route.to_owned(),
            session: format!("sid:{id}"),
        }
    }

    pub fn endpoint(route: &str, path_and_query: &str) -> Self {
        Self {
            route: route.to_owned(),
            session: format!("endpoint:{path_and_query}"),
        }
    }
}

struct Entry {
    recorder: SessionRecorder,
    /// When the last exchange of the session ended (or the session began).
    last_used: Mutex<Instant>,
    /// Exchanges of the session still running.
    open: AtomicUsize,
}

impl Entry {
    fn idle_since(&self) -> Option<Instant> {
        (self.open.load(Ordering::Acquire) == 0)
            .then(|| *self.last_used.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// An exchange's hold on its session's recorder.
pub struct Joined {
    pub recorder: SessionRecorder,
    /// None when the recorder belongs to this exchange alone.
    held: Option<Arc<Entry>>,
}

impl Joined {
    /// The recorder is this exchange's alone (no session, or shutdown began).
    pub fn is_own(&self) -> bool {
        self.held.is_none()
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(e) = &self.held {
            *e.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            e.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

pub struct Sessions {
    map: DashMap<Key, Arc<Entry>>,
    sink: Sink,
    tasks: tokio_util::task::TaskTracker,
    closed: AtomicBool,
}

impl Sessions {
    pub fn new(sink: Sink, tasks: tokio_util::task::TaskTracker) -> Self {
        Self {
            map: DashMap::new(),
            sink,
            tasks,
            closed: AtomicBool::new(false),
        }
    }

    /// A recorder of its own for an exchange that belongs to no session (yet).
    pub fn own(&self, session_id: &str) -> Joined {
        Joined {
            recorder: SessionRecorder::start(
                SessionInfo {
                    session_id: session_id.to_owned(),
                    transport: TRANSPORT_TCP,
                    ..Default::default()
                },
                true,
                self.sink.clone(),
                &self.tasks,
            ),
            held: None,
        }
    }

    /// Joins a session being recorded.
    pub fn join(&self, key: &Key) -> Option<Joined> {
        let e = self.map.get(key)?.clone();
        Some(hold(e))
    }

    /// Joins the session, starting its recording if this is the first we
    /// see of it (a session that began before this proxy did).
    pub async fn join_or_start(&self, key: &Key, session_id: &str) -> Joined {
        if self.closed.load(Ordering::Acquire) {
            return self.own(session_id);
        }
        let evicted = self.make_room();
        let joined = match self.map.entry(key.clone()) {
            MapEntry::Occupied(o) => hold(o.get().clone()),
            MapEntry::Vacant(v) => {
                let own = self.own(session_id);
                hold(v.insert(entry(own.recorder.clone())).clone())
            }
        };
        close_evicted(evicted).await;
        joined
    }

    /// Files a recorder under `key` (an initialize answer named the
    /// session, or an HTTP+SSE stream announced its endpoint) and joins it.
    pub async fn start(&self, key: Key, own: Joined) -> Joined {
        if self.closed.load(Ordering::Acquire) || !own.is_own() {
            return own;
        }
        let mut evicted = self.make_room();
        let e = entry(own.recorder.clone());
        if let Some(previous) = self.map.insert(key, e.clone()) {
            evicted.push((previous.recorder.clone(), "the session was started again"));
        }
        close_evicted(evicted).await;
        hold(e)
    }

    /// Ends a session's recording.
    pub async fn close(&self, key: &Key, reason: &str) {
        if let Some((_, e)) = self.map.remove(key) {
            e.recorder.close(reason).await;
        }
    }

    /// Closes sessions no exchange has used for `idle`.
    pub async fn close_idle(&self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<Key> = self
            .map
            .iter()
            .filter(|e| {
                e.idle_since()
                    .is_some_and(|t| now.duration_since(t) >= idle)
            })
            .map(|e| e.key().clone())
            .collect();
        let reason = format!("no traffic for {}", humantime::format_duration(idle));
        for key in stale {
            self.close(&key, &reason).await;
        }
    }

    /// At shutdown: closes every session; none is registered after this.
    pub async fn close_all(&self, reason: &str) {
        self.closed.store(true, Ordering::Release);
        let keys: Vec<Key> = self.map.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            self.close(&key, reason).await;
        }
    }

    /// Removes the least recently used idle session when the map is full.
    fn make_room(&self) -> Vec<(SessionRecorder, &'static str)> {
        if self.map.len() < MAX_SESSIONS {
            return Vec::new();
        }
        let oldest = self
            .map
            .iter()
            .filter_map(|e| Some((e.idle_since()?, e.key().clone())))
            .min_by_key(|(t, _)| *t)
            .map(|(_, k)| k);
        oldest
            .and_then(|k| self.map.remove(&k))
            .map(|(_, e)| {
                (
                    e.recorder.clone(),
                    "too many MCP sessions open; the least recently used stopped being recorded",
                )
            })
            .into_iter()
            .collect()
    }
}

fn entry(recorder: SessionRecorder) -> Arc<Entry> {
    Arc::new(Entry {
        recorder,
        last_used: Mutex::new(Instant::now()),
        open: AtomicUsize::new(0),
    })
}

fn hold(e: Arc<Entry>) -> Joined {
    e.open.fetch_add(1, Ordering::AcqRel);
    Joined {
        recorder: e.recorder.clone(),
        held: Some(e),
    }
}

async fn close_evicted(evicted: Vec<(SessionRecorder, &'static str)>) {
    for (recorder, reason) in evicted {
        recorder.close(reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        // A journal is never written in these tests: nothing is observed.
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let options = crate::journal::JournalOptions::at(&dir.path().join("j.db"));
        let (journal, writer) = crate::journal::Journal::open(&options, metrics.clone()).unwrap();
        std::mem::forget((writer, dir));
        Sessions::new(
            Sink {
                journal,
                metrics,
                redact: true,
            },
            tokio_util::task::TaskTracker::new(),
        )
    }

    #[tokio::test]
    async fn sessions_in_use_are_never_idle_and_shutdown_registers_nothing() {
        let s = sessions();
        let key = Key::session_id("/t", "abc");
        let held = s.join_or_start(&key, "abc").await;
        assert!(!held.is_own());
        s.close_idle(Duration::ZERO).await;
        assert!(s.join(&key).is_some(), "an open exchange keeps its session");
        drop(held);
        s.close_idle(Duration::ZERO).await;
        assert!(s.join(&key).is_none(), "idle once the last exchange ended");

        s.close_all("shutdown").await;
        let late = s.join_or_start(&key, "abc").await;
        assert!(late.is_own(), "nothing is registered after shutdown began");
        assert!(s.join(&key).is_none());
    }
}
