//! A real HAProxy (Debian's `haproxy`) in front of a sandbox's members, for the tests and
//! `baton bench takeover --via-haproxy`: one TCP frontend that sends the application to the
//! writer, and HAProxy's runtime API on a Unix socket, which `hooks/haproxy_writer.lua` drives.
//!
//! Every member is a server of the backend `mysql_writer`; only the writer is enabled, the others
//! are in maintenance. A connection that arrives while no server is ready waits in HAProxy's queue
//! (up to `timeout queue`) instead of failing: the application sees the switch as a pause.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{free_port, SandboxError};
use crate::topology::InstanceKey;

/// The backend the writer hook moves.
pub const BACKEND: &str = "mysql_writer";

pub struct Haproxy {
    /// The application's port on 127.0.0.1.
    pub port: u16,
    /// The runtime API (admin level).
    pub socket: PathBuf,
    child: std::process::Child,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io { path: path.to_path_buf(), source }
}

/// The configuration: `members` as servers of the backend. `start` puts all but the writer in
/// maintenance through the runtime API (as the hook will: a server disabled in the configuration
/// keeps a configured-maintenance flag that `set server ... state ready` does not clear).
pub fn config(port: u16, socket: &Path, members: &[InstanceKey]) -> String {
    let mut cfg = format!(
        "global\n  stats socket {} mode 600 level admin\n  maxconn 2000\n\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n  timeout queue 30s\n\n\
         frontend app\n  bind 127.0.0.1:{port}\n  default_backend {BACKEND}\n\n\
         backend {BACKEND}\n",
        socket.display()
    );
    for m in members {
        cfg.push_str(&format!("  server {} {}:{}\n", server_name(m), m.host, m.port));
    }
    cfg
}

fn server_name(k: &InstanceKey) -> String {
    format!("db_{}", k.port)
}

impl Haproxy {
    /// Starts HAProxy in `dir` on a free port and waits until its runtime API answers.
    pub async fn start(dir: &Path, members: &[InstanceKey], writer: &InstanceKey) -> Result<Haproxy, SandboxError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let socket = dir.join("haproxy.sock");
        let _ = std::fs::remove_file(&socket);
        let port = free_port()?;
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, config(port, &socket, members)).map_err(io(&cfg_path))?;
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).map_err(io(&log))?;
        let err = out.try_clone().map_err(io(&log))?;
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| SandboxError::Init(format!("cannot run haproxy (apt-get install haproxy): {e}")))?;
        let mut h = Haproxy { port, socket, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(info) = h.runtime("show servers state").await {
                if info.contains(BACKEND) {
                    let off: Vec<String> = members
                        .iter()
                        .filter(|m| *m != writer)
                        .map(|m| format!("set server {BACKEND}/{} state maint", server_name(m)))
                        .collect();
                    if !off.is_empty() {
                        let answer = h.runtime(&off.join("; ")).await?;
                        if !answer.trim().is_empty() {
                            return Err(SandboxError::Init(format!("haproxy: {answer}")));
                        }
                    }
                    return Ok(h);
                }
            }
            if let Ok(Some(status)) = h.child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(SandboxError::Init(format!("haproxy exited ({status}): {tail}")));
            }
            if Instant::now() > deadline {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(SandboxError::Init(format!(
                    "haproxy did not answer on {} in 10 s: {tail}",
                    h.socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The application's address.
    pub fn key(&self) -> InstanceKey {
        InstanceKey::new("127.0.0.1", self.port)
    }

    /// A command line that sends its standard input to the runtime API (the hook's `admin`).
    pub fn admin_command(&self) -> String {
        format!("socat -t 2 stdio unix-connect:{}", self.socket.display())
    }

    /// One runtime API command (several separated by `;`), and its answer.
    pub async fn runtime(&self, cmd: &str) -> Result<String, SandboxError> {
        let err = io(&self.socket);
        let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::UnixStream::connect(&self.socket))
            .await
            .map_err(|_| err(std::io::ErrorKind::TimedOut.into()))?
            .map_err(&err)?;
        s.write_all(format!("{cmd}\n").as_bytes()).await.map_err(&err)?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out))
            .await
            .map_err(|_| err(std::io::ErrorKind::TimedOut.into()))?
            .map_err(&err)?;
        Ok(out)
    }

    /// The servers of the backend that take new connections (operational state 2, admin state 0).
    pub async fn ready_servers(&self) -> Result<Vec<InstanceKey>, SandboxError> {
        let state = self.runtime(&format!("show servers state {BACKEND}")).await?;
        Ok(parse_ready(&state))
    }
}

/// From `show servers state`: the address of every server that is up and not drained or in
/// maintenance.
pub fn parse_ready(state: &str) -> Vec<InstanceKey> {
    let mut lines = state.lines().filter(|l| !l.trim().is_empty());
    let _version = lines.next();
    let Some(header) = lines.next() else { return Vec::new() };
    let cols: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(addr), Some(port), Some(op), Some(admin)) =
        (col("srv_addr"), col("srv_port"), col("srv_op_state"), col("srv_admin_state"))
    else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ready = f.get(op) == Some(&"2") && f.get(admin) == Some(&"0");
            if !ready {
                return None;
            }
            Some(InstanceKey::new(*f.get(addr)?, f.get(port)?.parse().ok()?))
        })
        .collect()
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_servers_from_the_state_dump() {
        let dump = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
                    srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
                    srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n\
                    3 mysql_writer 1 db_3306 127.0.0.1 2 0 1 1 10 1 0 0 0 0 0 0 - 3306 -\n\
                    3 mysql_writer 2 db_3307 127.0.0.1 0 1 1 1 10 1 0 0 0 0 0 0 - 3307 -\n\
                    3 mysql_writer 3 db_3308 127.0.0.1 2 8 1 1 10 1 0 0 0 0 0 0 - 3308 -\n";
        assert_eq!(parse_ready(dump), vec![InstanceKey::new("127.0.0.1", 3306)]);
        assert!(parse_ready("").is_empty());
    }

    #[test]
    fn config_lists_every_member() {
        let m = [InstanceKey::new("127.0.0.1", 1), InstanceKey::new("127.0.0.1", 2)];
        let c = config(9, Path::new("/s"), &m);
        assert!(c.contains("server db_1 127.0.0.1:1\n") && c.contains("server db_2 127.0.0.1:2\n"), "{c}");
        assert!(c.contains("bind 127.0.0.1:9") && c.contains("stats socket /s mode 600 level admin"), "{c}");
    }
}
