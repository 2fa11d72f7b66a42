//! Other processes: whether one is alive, signals, waiting for its exit through a pidfd (never a
//! sleep in a loop). Used by `baton serve` (waiting for the previous owner of a takeover) and by
//! the sandbox.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// True while `pid` is a live process (a zombie counts as dead; our own zombies are reaped).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // Reap it if it is our child and has exited; harmless (ECHILD) otherwise.
    // SAFETY: waitpid with WNOHANG on a pid and a null status pointer has no memory effects.
    unsafe {
        libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

pub fn send_signal(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory effects.
    pid != 0 && unsafe { libc::kill(pid as i32, signal) } == 0
}

/// Waits until `pid` exits, up to `limit`. True when it did.
pub async fn wait_exit(pid: u32, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as i32;
    if fd < 0 {
        return !pid_alive(pid);
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the OwnedFd stays open for as long as the AsyncFd that owns it is registered.
    let Ok(afd) = (unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }) else {
        return !pid_alive(pid);
    };
    let exited = tokio::time::timeout(limit, afd.readable()).await.is_ok();
    pid_alive(pid); // reap our own child
    exited
}

/// SIGTERM (a clean shutdown), then SIGKILL if it has not exited within `limit`.
pub async fn stop(pid: u32, limit: Duration) {
    if !pid_alive(pid) {
        return;
    }
    send_signal(pid, libc::SIGTERM);
    if !wait_exit(pid, limit).await {
        send_signal(pid, libc::SIGKILL);
        wait_exit(pid, Duration::from_secs(5)).await;
    }
}

/// Raises this process's open-file limit (thousands of connections: the fleet poller, the
/// simulator): to `fs.nr_open` where allowed (root), else to the hard limit. The limit now.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let most: u64 =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    // SAFETY: getrlimit/setrlimit write and read the struct we pass; no other memory is touched.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if most > lim.rlim_max {
            let want = libc::rlimit { rlim_cur: most, rlim_max: most };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return most;
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}
