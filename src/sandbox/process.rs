//! Starting and stopping one `mariadbd`: readiness from the server's own sd_notify message,
//! exit from a pidfd. Neither sleeps in a loop.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::UnixDatagram;

use super::{SandboxError, SandboxInstance};

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

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `mariadbd` for `inst` in its own process group (it outlives Baton) and waits for its
/// `READY=1`. Returns the pid.
pub async fn start(mariadbd: &Path, inst: &SandboxInstance, limit: Duration) -> Result<u32, SandboxError> {
    let notify = inst.dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify);
    let sock = UnixDatagram::bind(&notify).map_err(|source| SandboxError::Io { path: notify.clone(), source })?;
    let log = inst.error_log();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| SandboxError::Io { path: log.clone(), source })?;
    let err = out.try_clone().map_err(|source| SandboxError::Io { path: log.clone(), source })?;
    let mut child = std::process::Command::new(mariadbd)
        .arg(format!("--defaults-file={}", inst.cnf().display()))
        .env("NOTIFY_SOCKET", &notify)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| SandboxError::Io { path: mariadbd.to_path_buf(), source })?;
    let pid = child.id();
    let fail = |reason: String| SandboxError::Start { port: inst.port, reason, log: log.clone(), tail: tail(&log, 15) };

    let ready = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await?;
            if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1") {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(limit, ready) => match r {
            Ok(Ok(())) => Ok(pid),
            Ok(Err(e)) => Err(fail(format!("notify socket: {e}"))),
            Err(_) => Err(fail(format!("not ready within {} s", limit.as_secs()))),
        },
        _ = wait_exit(pid, limit) => Err(fail(format!("mariadbd exited early ({:?})", child.try_wait().ok().flatten()))),
    };
    let _ = std::fs::remove_file(&notify);
    if outcome.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome
}
