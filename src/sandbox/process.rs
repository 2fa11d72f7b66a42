//! Starting one `mariadbd`: readiness from the server's own sd_notify message, not from sleeping
//! in a loop (its exit is waited for through a pidfd: `crate::process`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixDatagram;

use super::{SandboxError, SandboxInstance};
pub use crate::process::{pid_alive, send_signal, stop, wait_exit};

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
