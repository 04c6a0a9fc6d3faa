//! Background work (recording, export, the batched journal writer) runs at a
//! lower scheduling priority than forwarding, so an agent's next request is
//! not kept waiting behind the record of its last one.

/// How much lower (nice increment).
pub const NICE: libc::c_int = 10;

/// Lowers the calling thread's priority by `NICE`. Linux only: there the
/// nice value is per thread; elsewhere the call would affect the whole
/// process, so it is not made.
pub fn lower_this_thread() {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice() -> libc::c_int {
        // SAFETY: reads this thread's own nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
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
}
