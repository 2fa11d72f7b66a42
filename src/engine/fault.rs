//! Fault injection for the reliability drill: with `BATON_FAULT_CRASH_AFTER=<phase>` in its
//! environment, the process kills itself (SIGKILL, no cleanup, as a crash would) right after
//! journaling that phase. Unset, this costs one environment lookup per phase.

use super::Phase;

pub fn crash_point(phase: Phase) {
    let Ok(want) = std::env::var("BATON_FAULT_CRASH_AFTER") else { return };
    if want == phase.name() {
        tracing::error!(phase = phase.name(), "BATON_FAULT_CRASH_AFTER: killing this process");
        // SAFETY: sending a signal to ourselves has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
