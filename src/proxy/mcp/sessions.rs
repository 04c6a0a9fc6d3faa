//! The MCP sessions the proxy is recording, by route and session key: the
//! `Mcp-Session-Id` of Streamable HTTP, or the POST endpoint the older
//! HTTP+SSE transport announced. Every HTTP exchange of a session feeds the
//! same recorder, so a request and its response pair even when they travel
//! on different connections.
//!
//! Bounded by `MAX_SESSIONS` (the least recently used is closed to make
//! room) and by the idle sweep; sessions are closed — their unanswered
//! requests recorded as such — on DELETE, when idle, and at shutdown.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

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
    last_used: Mutex<Instant>,
}

pub struct Sessions {
    map: DashMap<Key, Entry>,
    sink: Sink,
    tasks: tokio_util::task::TaskTracker,
}

impl Sessions {
    pub fn new(sink: Sink, tasks: tokio_util::task::TaskTracker) -> Self {
        Self {
            map: DashMap::new(),
            sink,
            tasks,
        }
    }

    /// A recorder for one exchange that belongs to no session (yet).
    pub fn transient(&self, session_id: &str) -> SessionRecorder {
        SessionRecorder::start(
            SessionInfo {
                session_id: session_id.to_owned(),
                transport: TRANSPORT_TCP,
                ..Default::default()
            },
            true,
            self.sink.clone(),
            &self.tasks,
        )
    }

    /// The session's recorder, if it is being recorded.
    pub fn get(&self, key: &Key) -> Option<SessionRecorder> {
        let e = self.map.get(key)?;
        *e.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Some(e.recorder.clone())
    }

    /// The session's recorder, started if this is the first we see of it
    /// (a session that began before this proxy did).
    pub async fn get_or_start(&self, key: &Key, session_id: &str) -> SessionRecorder {
        if let Some(r) = self.get(key) {
            return r;
        }
        let r = self.transient(session_id);
        self.insert(key.clone(), r.clone()).await;
        r
    }

    /// Files `recorder` under `key` (an initialize answer named the
    /// session, or an SSE stream announced its endpoint).
    pub async fn insert(&self, key: Key, recorder: SessionRecorder) {
        if self.map.len() >= MAX_SESSIONS
            && let Some(oldest) = self.least_recently_used()
        {
            self.close(
                &oldest,
                "too many MCP sessions open; the least recently used stopped being recorded",
            )
            .await;
        }
        let previous = self.map.insert(
            key,
            Entry {
                recorder,
                last_used: Mutex::new(Instant::now()),
            },
        );
        if let Some(p) = previous {
            p.recorder.close("the session was started again").await;
        }
    }

    /// Ends a session's recording.
    pub async fn close(&self, key: &Key, reason: &str) {
        if let Some((_, e)) = self.map.remove(key) {
            e.recorder.close(reason).await;
        }
    }

    /// Closes sessions idle for `idle`.
    pub async fn close_idle(&self, idle: Duration) {
        let now = Instant::now();
        let stale: Vec<Key> = self
            .map
            .iter()
            .filter(|e| {
                now.duration_since(*e.last_used.lock().unwrap_or_else(|p| p.into_inner())) >= idle
            })
            .map(|e| e.key().clone())
            .collect();
        let reason = format!("no traffic for {}", humantime::format_duration(idle));
        for key in stale {
            self.close(&key, &reason).await;
        }
    }

    pub async fn close_all(&self, reason: &str) {
        let keys: Vec<Key> = self.map.iter().map(|e| e.key().clone()).collect();
        for key in keys {
            self.close(&key, reason).await;
        }
    }

    fn least_recently_used(&self) -> Option<Key> {
        self.map
            .iter()
            .min_by_key(|e| *e.last_used.lock().unwrap_or_else(|p| p.into_inner()))
            .map(|e| e.key().clone())
    }
}
