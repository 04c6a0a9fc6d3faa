//! The journal's SQLite layout and how a file is opened.
//!
//! `entries` is the append-only log (one row per `JournalEntry`, its protobuf
//! bytes in `entry`, `seq` from 1 without gaps; `prev_hash`/`entry_hash` hold
//! the hash chain; a pruned entry keeps its row and hash with `entry` NULL).
//! `blobs` is the content-addressed store every record refers to by digest.
//! `meta` holds the journal's identity, keys and whether its writer is open.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::JournalError;

pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq            INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    execution_id   TEXT,
    interaction_id TEXT,
    recorded_at_us INTEGER NOT NULL,
    entry          BLOB,
    prev_hash      BLOB NOT NULL,
    entry_hash     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_execution ON entries (execution_id, seq);
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries (kind, seq);
CREATE INDEX IF NOT EXISTS entries_by_interaction ON entries (interaction_id);
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    data   BLOB NOT NULL
);
";

/// The writer's page cache. Every record inserts its blobs into an index
/// keyed by content digest, i.e. at random places: with SQLite's default
/// 2 MiB cache that index stops fitting after some tens of thousands of
/// records and each insert reads pages back from the file. The cache
/// fills only as pages are used, so an idle or small journal costs nothing.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// How hard commits try to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Group commit; a crash can lose the batch being written.
    Batched,
    /// Every commit is fsynced, and requests wait for theirs before going upstream.
    WriteAhead,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batched" => Ok(Self::Batched),
            "write-ahead" => Ok(Self::WriteAhead),
            other => Err(format!(
                "unknown durability {other:?}; expected \"batched\" or \"write-ahead\""
            )),
        }
    }
}

/// Opens (creating if needed) a journal for writing: the file is created
/// `0600` in a `0700` directory before SQLite touches it, WAL mode is on, and
/// the schema and identity exist. `max_size` bounds the file (writes past it
/// fail as on a full disk).
pub fn open_for_writing(
    path: &Path,
    durability: Durability,
    max_size: Option<u64>,
) -> Result<Connection, JournalError> {
    let io = |e: std::io::Error| JournalError::Io(path.display().to_string(), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        create_private_dir(dir).map_err(io)?;
    }
    create_private_file(path).map_err(io)?;
    let conn = Connection::open(path).map_err(|e| JournalError::sqlite(path, e))?;
    let sq = |e| JournalError::sqlite(path, e);
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sq)?;
    let sync = match durability {
        Durability::Batched => "NORMAL",
        Durability::WriteAhead => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(sq)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(sq)?;
    if let Some(max) = max_size {
        let page: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sq)?;
        conn.pragma_update(None, "max_page_count", (max as i64 / page).max(1))
            .map_err(sq)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sq)?;
    stable_plans(&conn).map_err(sq)?;
    conn.execute_batch(SCHEMA).map_err(sq)?;
    let version: Option<String> = get_meta(&conn, "schema_version").map_err(sq)?;
    match version.as_deref().map(str::parse::<i64>) {
        None => {
            set_meta(&conn, "schema_version", &SCHEMA_VERSION.to_string()).map_err(sq)?;
            set_meta(&conn, "journal_id", &uuid::Uuid::new_v4().to_string()).map_err(sq)?;
            let key: [u8; 32] = rand::random();
            set_meta(&conn, "fingerprint_key", &hex::encode(key)).map_err(sq)?;
        }
        Some(Ok(v)) if v == SCHEMA_VERSION => {}
        Some(other) => {
            return Err(JournalError::Incompatible(format!(
                "{} has journal schema version {:?}; this sidetrace reads version {SCHEMA_VERSION}",
                path.display(),
                other
            )));
        }
    }
    Ok(conn)
}

/// Opens an existing journal for maintenance writes (prune), without
/// creating one.
pub fn open_existing(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Missing(path.display().to_string()));
    }
    let conn = Connection::open(path).map_err(|e| JournalError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(|e| JournalError::sqlite(path, e))?;
    super::wal_checkpointer::leave_to_the_writer(&conn)
        .map_err(|e| JournalError::sqlite(path, e))?;
    stable_plans(&conn).map_err(|e| JournalError::sqlite(path, e))?;
    Ok(conn)
}

/// Opens an existing journal for reading only.
pub fn open_for_reading(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Missing(path.display().to_string()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| JournalError::sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| JournalError::sqlite(path, e))?;
    stable_plans(&conn).map_err(|e| JournalError::sqlite(path, e))?;
    Ok(conn)
}

/// Plans chosen without looking at bound values. Otherwise SQLite
/// recompiles a cached statement whenever a parameter its planner looked at
/// (a `LIMIT ?`, a range bound) is bound again, which is every call: it was
/// 8% of sidetrace's CPU under load. The journal's queries are simple
/// indexed lookups whose best plan does not depend on the values.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

pub fn get_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2",
    )?
    .execute(params![key, value])?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn cached_statements_are_not_recompiled_for_new_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let writer = open_for_writing(&path, Durability::Batched, None).unwrap();
        for conn in [writer, open_for_reading(&path).unwrap()] {
            for (seq, limit) in [(0, 10), (5, 20), (7, 30)] {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq FROM entries WHERE seq > ?1 AND kind = 'x' ORDER BY seq LIMIT ?2",
                    )
                    .unwrap();
                let rows: Vec<i64> = stmt
                    .query_map(params![seq, limit], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert!(rows.is_empty());
                assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
            }
        }
    }

    #[test]
    fn the_writer_keeps_a_larger_page_cache_than_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let writer = open_for_writing(&path, Durability::Batched, None).unwrap();
        let cache = |c: &Connection| {
            c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(cache(&writer), -WRITER_CACHE_KIB);
        assert_ne!(cache(&open_for_reading(&path).unwrap()), -WRITER_CACHE_KIB);
    }
}
