//! Which processes are writing a journal. Several may at once — the proxy
//! and every `sidetrace mcp` wrapper share one journal — so each registers
//! itself in the meta table (pid, process start time, host) and removes
//! itself on a clean close. A registration whose process is gone was not
//! closed cleanly: the next writer to open records a chain break for it.

use rusqlite::{Connection, TransactionBehavior, params};

/// A writer that did not close cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadWriter {
    pub pid: u32,
}

/// Registers this process; returns its meta key and the writers found dead.
pub fn register(conn: &mut Connection) -> rusqlite::Result<(String, Vec<DeadWriter>)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT key, value FROM meta WHERE key LIKE 'writer:%' OR key = 'writer_state'",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let host = hostname();
    let mut dead = Vec::new();
    for (key, value) in rows {
        // Before per-process registration, one flag said "open".
        if key == "writer_state" {
            if value == "open" {
                dead.push(DeadWriter { pid: 0 });
            }
            tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
            continue;
        }
        let field = |name: &str| {
            value
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
        };
        let pid: u32 = field("pid").and_then(|p| p.parse().ok()).unwrap_or(0);
        let start = field("start").unwrap_or_default();
        let same_host = field("host").as_deref() == Some(host.as_str());
        if same_host && !alive(pid, &start) {
            dead.push(DeadWriter { pid });
            tx.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
        }
    }
    let me = format!("writer:{}", uuid::Uuid::new_v4());
    let value = format!(
        "pid={} start={} host={host}",
        std::process::id(),
        start_time(std::process::id()).unwrap_or_default()
    );
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        params![me, value],
    )?;
    tx.commit()?;
    Ok((me, dead))
}

pub fn unregister(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [key])
        .map(drop)
}

fn alive(pid: u32, start: &str) -> bool {
    pid != 0 && start_time(pid).is_some_and(|s| s == start)
}

/// A process's start time in clock ticks since boot (/proc/PID/stat field 22),
/// which tells a live process from a later one that reused its pid.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_writers_stay_and_dead_ones_are_found() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
            .unwrap();
        let (a, dead) = register(&mut conn).unwrap();
        assert!(dead.is_empty());
        let (b, dead) = register(&mut conn).unwrap();
        assert!(dead.is_empty(), "this process is alive");
        assert_ne!(a, b);
        let host = hostname();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('writer:gone', ?1)",
            [format!("pid=999999999 start=1 host={host}")],
        )
        .unwrap();
        let (_, dead) = register(&mut conn).unwrap();
        assert_eq!(dead, vec![DeadWriter { pid: 999_999_999 }]);
        unregister(&conn, &a).unwrap();
        let left: i64 = conn
            .query_row("SELECT COUNT(*) FROM meta", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2);
    }
}
