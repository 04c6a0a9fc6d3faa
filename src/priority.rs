//! Background work (recording, export, the batched journal writer) runs at a
//! lower scheduling priority than forwarding, so an agent's next request is
//! not kept waiting behind the record of its last one.
//!
//! A lower priority alone does not keep that promise: on a busy core the
//! scheduler still gives a niced thread its share in slices of a
//! millisecond or so, and a request that arrives meanwhile waits for the
//! slice to end (measured: 0.3–1.4 ms on a 2-core VM, even with
//! `SCHED_IDLE`). So background threads also offer the core back at short
//! intervals (`yield_point`): every `YIELD_EVERY` of work they call
//! `sched_yield`, which returns at once when nothing else wants the core.
//! Not while they are behind — exchanges piling up in the recording backlog
//! (`backlog_joined`), or a thread's own queue (`set_behind`): then
//! forwarding is about to wait for them anyway (the backlog is bounded),
//! and yielding would only cost context switches when throughput is what
//! counts.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How much lower (nice increment).
pub const NICE: libc::c_int = 10;

/// The most a background thread works before offering the core back.
const YIELD_EVERY: Duration = Duration::from_micros(50);

thread_local! {
    /// Set on background threads: when they last offered the core back.
    static LAST_YIELD: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set while this background thread has a backlog to work through.
    static BEHIND: Cell<bool> = const { Cell::new(false) };
}

/// Exchanges between their arrival and their record being queued, in all
/// of this process's recorders.
static BACKLOG: AtomicUsize = AtomicUsize::new(0);

/// With this many exchanges in the backlog, recording is behind.
const BACKLOG_BEHIND: usize = 64;

pub fn backlog_joined(n: usize) {
    BACKLOG.fetch_add(n, Ordering::Relaxed);
}

pub fn backlog_left(n: usize) {
    BACKLOG.fetch_sub(n, Ordering::Relaxed);
}

/// On a background thread (one that called `lower_this_thread`) that is
/// not behind, offers the core to waiting threads if it has worked
/// `YIELD_EVERY` since it last did; elsewhere (the forwarding runtime), does
/// nothing. Cheap enough to call per SSE event or per journal entry.
pub fn yield_point() {
    LAST_YIELD.with(|last| {
        let Some(at) = last.get() else {
            return;
        };
        if BEHIND.with(Cell::get) || BACKLOG.load(Ordering::Relaxed) >= BACKLOG_BEHIND {
            return;
        }
        if at.elapsed() >= YIELD_EVERY {
            std::thread::yield_now();
            last.set(Some(Instant::now()));
        }
    });
}

/// Tells `yield_point` whether this background thread has a backlog (a
/// full queue, a large batch, export lagging).
pub fn set_behind(behind: bool) {
    BEHIND.with(|b| b.set(behind));
}

/// Lowers the calling thread's priority by `NICE` and makes it a
/// background thread for `yield_point`. Linux only: there the nice value is
/// per thread; elsewhere the call would affect the whole process, so it is
/// not made.
pub fn lower_this_thread() {
    LAST_YIELD.with(|last| last.set(Some(Instant::now())));
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority/setpriority on this thread's own id change only its nice value.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if libc::setpriority(libc::PRIO_PROCESS, tid, now + NICE) != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
}

/// Makes the calling thread run only when nothing else on its core wants
/// to (`SCHED_IDLE`): for work that has no stretch where it could yield and
/// that may lag behind, such as copying the journal's WAL back into the
/// database. Whenever the other threads of its core want to run, it waits
/// (the WAL copier's runs stayed under 70 µs at 500 req/s, where the
/// writer's copies ran 2.4 ms), so it suits work nothing waits for; the
/// recording threads themselves it made worse (see the module comment and
/// docs/benchmarks.md). There is no way back (an unprivileged thread may
/// not leave `SCHED_IDLE`), so give it a thread of its own. Returns whether
/// the policy was set.
pub fn idle_this_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; only its scheduling policy changes.
        let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0;
        if !set {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not make a background thread idle-priority"
            );
        }
        set
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice() -> libc::c_int {
        // SAFETY: reads this thread's own nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn only_background_threads_yield() {
        // Not a background thread: nothing to do, and no state kept.
        yield_point();
        assert!(LAST_YIELD.with(Cell::get).is_none());
        let moved = std::thread::spawn(|| {
            lower_this_thread();
            let first = LAST_YIELD.with(Cell::get).unwrap();
            std::thread::sleep(YIELD_EVERY * 2);
            set_behind(true);
            yield_point();
            let behind_kept_on = LAST_YIELD.with(Cell::get).unwrap() == first;
            set_behind(false);
            yield_point();
            behind_kept_on && LAST_YIELD.with(Cell::get).unwrap() > first
        })
        .join()
        .unwrap();
        assert!(
            moved,
            "a background thread that worked long enough yields, unless behind"
        );
    }

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = nice();
        let after = std::thread::spawn(|| {
            lower_this_thread();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(after, (before + NICE).min(19));
        assert_eq!(nice(), before, "other threads keep their priority");
    }

    #[test]
    fn idle_policy_is_the_calling_threads_only() {
        // SAFETY: reads the calling thread's own policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let (set, inside) = std::thread::spawn(move || (idle_this_thread(), policy()))
            .join()
            .unwrap();
        assert!(set, "any thread may lower itself to SCHED_IDLE");
        assert_eq!(inside, libc::SCHED_IDLE);
        assert_eq!(policy(), before, "other threads keep their policy");
    }
}
