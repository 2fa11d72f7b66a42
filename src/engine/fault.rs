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

#[cfg(feature = "lab")]
pub fn crash_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var("BATON_FAULT_CRASH_AFTER").ok());
    if want.as_deref() == Some(phase.name()) {
        tracing::error!(phase = phase.name(), "BATON_FAULT_CRASH_AFTER: killing this process");
        // SAFETY: sending a signal to ourselves has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// With `BATON_FAULT_PANIC_AFTER=<phase>`, the takeover panics right after recording that
/// phase (the engine must then settle it like any failure). Read once per process.
#[cfg(feature = "lab")]
pub fn panic_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var("BATON_FAULT_PANIC_AFTER").ok());
    if want.as_deref() == Some(phase.name()) {
        panic!("BATON_FAULT_PANIC_AFTER: a panic after {}", phase.name());
    }
}

/// With `BATON_FAULT_STOP_AFTER=<phase>`, the process stops itself (SIGSTOP, as a frozen VM or
/// a long GC pause would) right after recording that phase, until someone sends SIGCONT. Read
/// once per process.
#[cfg(feature = "lab")]
pub fn stop_point(phase: Phase) {
    static WANT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let want = WANT.get_or_init(|| std::env::var("BATON_FAULT_STOP_AFTER").ok());
    if want.as_deref() == Some(phase.name()) {
        tracing::error!(phase = phase.name(), "BATON_FAULT_STOP_AFTER: stopping this process");
        // SAFETY: sending a signal to ourselves has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGSTOP);
        }
    }
}
