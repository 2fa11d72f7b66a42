//! A real etcd cluster (Debian's `etcd-server`) on free loopback ports, fresh data directories and
//! one cluster token per run, for the tests and the demo of several Baton nodes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, SandboxError};

pub struct EtcdMember {
    pub name: String,
    /// `http://127.0.0.1:PORT`, where clients connect.
    pub client_url: String,
    child: Option<Child>,
}

impl EtcdMember {
    /// Kills the member (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    pub dir: PathBuf,
}

/// What `baton sandbox etcd up` leaves in its directory for `down` (`etcd.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Running {
    members: Vec<(String, String, u32)>,
}

impl EtcdCluster {
    /// Starts `n` members in `dir` and waits until every one answers its health endpoint.
    pub async fn start(dir: &Path, n: usize) -> Result<EtcdCluster, SandboxError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::Io { path: path.clone(), source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let token = format!("baton-{}", uuid::Uuid::new_v4().simple());
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}")).collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("e{i}");
            let data = dir.join(&name);
            let log = dir.join(format!("{name}.log"));
            let out = std::fs::File::create(&log).map_err(io(&log))?;
            let err = out.try_clone().map_err(io(&log))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let child = Command::new("etcd")
                .args(["--name", &name, "--data-dir"])
                .arg(&data)
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Its own process group: a Ctrl-C meant for the command that started it is not for it.
                .process_group(0)
                .spawn()
                .map_err(|e| SandboxError::Init(format!("cannot run etcd (apt-get install etcd-server): {e}")))?;
            members.push(EtcdMember { name, client_url, child: Some(child) });
        }
        let cluster = EtcdCluster { members, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| SandboxError::Init(e.to_string()))?;
        for m in &cluster.members {
            loop {
                let ok =
                    http.get(format!("{}/health", m.client_url)).send().await.ok().filter(|r| r.status().is_success());
                if let Some(r) = ok {
                    if r.text().await.is_ok_and(|t| t.contains("true")) {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    let tail = std::fs::read_to_string(dir.join(format!("{}.log", m.name))).unwrap_or_default();
                    let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join("\n");
                    return Err(SandboxError::Init(format!("etcd {} not healthy within 20 s:\n{tail}", m.name)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(cluster)
    }

    /// Leaves the members running after this value is gone (`baton sandbox etcd up`): their
    /// names, URLs and pids go to `etcd.json` in the directory, for `stop_detached`.
    pub fn detach(mut self) -> Result<(), SandboxError> {
        let mut running = Running { members: Vec::new() };
        for m in &mut self.members {
            if let Some(c) = m.child.take() {
                running.members.push((m.name.clone(), m.client_url.clone(), c.id()));
            }
        }
        let path = self.dir.join("etcd.json");
        let json = serde_json::to_vec_pretty(&running).map_err(|e| SandboxError::Init(e.to_string()))?;
        let written = std::fs::write(&path, json).map_err(|source| SandboxError::Io { path: path.clone(), source });
        // The directory (data, logs, etcd.json) stays: `stop_detached` removes it.
        self.dir = PathBuf::new();
        written
    }

    /// Stops the members `detach` left in `dir` and removes the directory; how many were running.
    pub async fn stop_detached(dir: &Path) -> Result<usize, SandboxError> {
        let path = dir.join("etcd.json");
        let raw = std::fs::read(&path).map_err(|source| SandboxError::Io { path: path.clone(), source })?;
        let running: Running = serde_json::from_slice(&raw)
            .map_err(|e| SandboxError::Init(format!("{}: not an etcd sandbox record: {e}", path.display())))?;
        let alive: Vec<u32> =
            running.members.iter().map(|(_, _, pid)| *pid).filter(|p| crate::process::pid_alive(*p)).collect();
        futures::future::join_all(alive.iter().map(|p| crate::process::stop(*p, Duration::from_secs(10)))).await;
        std::fs::remove_dir_all(dir).map_err(|source| SandboxError::Io { path: dir.to_path_buf(), source })?;
        Ok(alive.len())
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
