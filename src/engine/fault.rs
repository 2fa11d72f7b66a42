//! Fault injection for the reliability drill: with `BATON_FAULT_CRASH_AFTER=<phase>` in its
//! environment, the process kills itself (SIGKILL, no cleanup, as a crash would) right after
//! recording that phase (journaled, except inside the write-unavailable window, where nothing
//! is). The variable is read once per process.
//!
//! Only with the feature `lab`: a production build (`--no-default-features`) has empty fault
//! points, and no environment variable can make it crash or panic.

use super::Phase;

#[cfg(not(feature = "lab"))]
pub fn crash_point(_: Phase) {}

#[cfg(not(feature = "lab"))]
pub fn panic_point(_: Phase) {}

#[cfg(not(feature = "lab"))]
pub fn stop_point(_: Phase) {}

/// Whether the variable `var` names `phase` (read once per process, into `cell`).
#[cfg(feature = "lab")]
fn wanted(cell: &std::sync::OnceLock<Option<String>>, var: &str, phase: Phase) -> bool {
    cell.get_or_init(|| std::env::var(var).ok()).as_deref() == Some(phase.name())
}

/// Sends `signal` to this process, saying why.
#[cfg(feature = "lab")]
fn signal_self(signal: i32, var: &str, phase: Phase) {
    tracing::error!(phase = phase.name(), "{var}: signal {signal} to this process");
    // SAFETY: sending a signal to ourselves has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
}

#[cfg(feature = "lab")]
pub fn crash_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if wanted(&WANT, "BATON_FAULT_CRASH_AFTER", phase) {
        signal_self(libc::SIGKILL, "BATON_FAULT_CRASH_AFTER", phase);
    }
}

/// With `BATON_FAULT_PANIC_AFTER=<phase>`, the takeover panics right after recording that
/// phase (the engine must then settle it like any failure). Read once per process.
#[cfg(feature = "lab")]
pub fn panic_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if wanted(&WANT, "BATON_FAULT_PANIC_AFTER", phase) {
        panic!("BATON_FAULT_PANIC_AFTER: a panic after {}", phase.name());
    }
}

/// With `BATON_FAULT_STOP_AFTER=<phase>`, the process stops itself (SIGSTOP, as a frozen VM or
/// a long GC pause would) right after recording that phase, until someone sends SIGCONT. Read
/// once per process.
#[cfg(feature = "lab")]
pub fn stop_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if wanted(&WANT, "BATON_FAULT_STOP_AFTER", phase) {
        signal_self(libc::SIGSTOP, "BATON_FAULT_STOP_AFTER", phase);
    }
}
