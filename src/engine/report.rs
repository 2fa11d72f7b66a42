//! What a takeover reports: its phases with timings and SQL, its outcome, its errors. The same
//! value is the journal (saved after every phase), the audit record, and the CLI/HTTP answer.

use serde::{Deserialize, Serialize};

use super::plan::Check;
use crate::mysql::ops::OpRecord;

/// The takeover's outcome, one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// New master writable, old master repointed, no errors.
    Promoted,
    /// Stopped before changing anything.
    Refused,
    /// Failed after changes; every change was undone.
    RolledBack,
    /// Failed, and the rollback did not complete either: read `errors`.
    Failed,
    /// Promotion completed; some later step failed (never a plain failure).
    PromotedWithErrors,
    /// A dry run that passed every check: `plan` says what a takeover would do.
    Planned,
    /// Interrupted (its process died) in a state Baton must not settle alone: both the old and
    /// the new master are writable. `baton takeover resume|abort ID` decides.
    NeedsOperator,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Promoted => "promoted",
            Status::Refused => "refused",
            Status::RolledBack => "rolled_back",
            Status::Failed => "failed",
            Status::PromotedWithErrors => "promoted_with_errors",
            Status::Planned => "planned",
            Status::NeedsOperator => "needs_operator",
        }
    }
}

/// The named phases, in the order they run. Rollback runs only after a failure between
/// `relocate_siblings` and `promote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Resolve,
    CheckMaster,
    ChooseDesignated,
    CheckDesignated,
    PreTakeoverHooks,
    RelocateSiblings,
    PreFenceHooks,
    Fence,
    CatchUp,
    Promote,
    PostPromoteHooks,
    RepointOldMaster,
    PostTakeoverHooks,
    Rollback,
}

impl Phase {
    /// Phases that may change a server (a stopped designated replica started, hooks with
    /// `scripts.allow_writes`, the relocation, the fence, the promotion): write-ahead journaled.
    /// Phases journaled as in progress before they run: those that may change a server, and
    /// the post-promotion hooks (so that a recovery knows they may have run).
    pub fn write_ahead(self) -> bool {
        self.changes_servers() || matches!(self, Phase::PostPromoteHooks | Phase::PostTakeoverHooks)
    }

    pub fn changes_servers(self) -> bool {
        matches!(
            self,
            Phase::CheckDesignated
                | Phase::PreTakeoverHooks
                | Phase::RelocateSiblings
                | Phase::PreFenceHooks
                | Phase::Fence
                | Phase::CatchUp
                | Phase::Promote
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::CheckMaster => "check_master",
            Phase::ChooseDesignated => "choose_designated",
            Phase::CheckDesignated => "check_designated",
            Phase::PreTakeoverHooks => "pre_takeover_hooks",
            Phase::RelocateSiblings => "relocate_siblings",
            Phase::PreFenceHooks => "pre_fence_hooks",
            Phase::Fence => "fence",
            Phase::CatchUp => "catch_up",
            Phase::Promote => "promote",
            Phase::PostPromoteHooks => "post_promote_hooks",
            Phase::RepointOldMaster => "repoint_old_master",
            Phase::PostTakeoverHooks => "post_takeover_hooks",
            Phase::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Refused,
    Failed,
}

/// One phase as it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: Phase,
    /// Milliseconds since the takeover started.
    pub start_ms: f64,
    pub duration_ms: f64,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpRecord>,
    /// The write primitives hooks called in this phase (with `scripts.allow_writes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script_ops: Vec<super::ScriptOp>,
    /// For hook phases: the process that ran them (`host:pid`), so that a recovery's report says
    /// which hooks ran where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The whole takeover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeoverReport {
    pub id: String,
    /// `graceful-master-takeover` or `graceful-master-takeover-auto`.
    pub command: String,
    pub status: Status,
    pub cluster: String,
    pub alias: Option<String>,
    pub old_master: Option<String>,
    pub new_master: Option<String>,
    /// Why this replica (the candidate policy's explanation, or "designated by the request").
    pub choice: Option<String>,
    /// Unix time in milliseconds.
    pub started_at: i64,
    pub total_ms: f64,
    /// From the fence on the old master to the new master accepting writes.
    pub write_unavailable_ms: Option<f64>,
    pub old_master_repointed: bool,
    pub siblings_moved: Vec<String>,
    pub phases: Vec<PhaseRecord>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The version of the operator's scripts this takeover ran with (None: no scripts).
    #[serde(default)]
    pub scripts: Option<super::hooks::ScriptsVersion>,
    /// A dry run.
    #[serde(default)]
    pub dry_run: bool,
    /// The members below the master when the takeover started, and those unreachable then.
    #[serde(default)]
    pub replicas: Vec<String>,
    #[serde(default)]
    pub lost_replicas: Vec<String>,
    /// Hash of the topology the takeover (or the plan) was decided on: members, sources,
    /// read_only, replication threads, versions. A request carrying a `plan_hash` runs only if
    /// the live topology still hashes the same.
    #[serde(default)]
    pub plan_hash: Option<String>,
    /// Dry run: what a takeover would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Why the takeover did not start, for callers that map it (HTTP status codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// Whether the demoted master's replication is started (`auto` or `start_replication`).
    #[serde(default)]
    pub start_old_master_replication: bool,
    /// The replica chosen for promotion (set in choose_designated; `new_master` once promoted).
    #[serde(default)]
    pub designated: Option<String>,
    /// The process running the takeover, to tell a takeover in flight from an interrupted one.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// The process (and node session) that started it, when another one settled it (`owner` is
    /// then the settling one; each recovery says who settled it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<Owner>,
    /// Set when the takeover was interrupted and later settled (`baton takeover recover|resume|abort`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recoveries: Vec<Recovery>,
    /// The phase that was about to change servers when this was journaled (write-ahead): if the
    /// process dies now, that phase may have run in part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<Phase>,
    /// How to undo what the takeover changed before promotion, in the order it runs (written
    /// before each change: see `engine::rollback`). What the rollback did is its phase's detail.
    #[serde(default, skip_serializing_if = "super::UndoPlan::is_empty")]
    pub undo: super::UndoPlan,
    /// The old master's semi-sync when the takeover started; carried over when its master side
    /// was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<crate::topology::SemiSync>,
}

/// The process that runs a takeover: host name, pid and the process's start time (so that a
/// reused pid is not mistaken for the original).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// Clock ticks after boot (field 22 of /proc/PID/stat).
    pub started: u64,
    /// The Baton node session it ran on (`node_id/lease`), when several share a journal on etcd:
    /// alive while that lease is (its registration key, seen from any host). A node that comes
    /// back on a new lease is a new session: what the old one owned counts as interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

static NODE_SESSION: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// This process's node session among Baton nodes sharing a journal (`baton serve` with `[ha]`):
/// set each time it registers on a new lease.
pub fn set_node_session(session: &str) {
    *NODE_SESSION.write().unwrap_or_else(|e| e.into_inner()) = Some(session.to_string());
}

fn node_session() -> Option<String> {
    NODE_SESSION.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner { host: host_name(), pid, started: proc_start(pid).unwrap_or(0), node: node_session() }
    }

    /// The owner that process `pid` on this host would be, while it runs.
    pub fn of_pid(pid: u32) -> Option<Owner> {
        Some(Owner { host: host_name(), pid, started: proc_start(pid)?, node: node_session() })
    }

    /// Whether this owner can still be running the takeover (`alive`), told by its node
    /// session's registration when the journal is shared (`live_nodes`: the sessions whose lease
    /// is alive; None: one node, no registrations). A node whose lease lapsed acts no more, even
    /// if its process still runs (stopped, or cut off from etcd).
    pub fn alive_among(&self, live_nodes: Option<&[String]>) -> bool {
        match (&self.node, live_nodes) {
            (Some(n), Some(live)) => live.contains(n),
            _ => self.alive(),
        }
    }

    pub fn alive(&self) -> bool {
        if self.host != host_name() {
            return true;
        }
        // The same process (not a reused pid), and not a zombie: a killed process whose parent has
        // not reaped it yet is dead.
        proc_start(self.pid) == Some(self.started) && crate::process::pid_alive(self.pid)
    }
}

/// One settlement of an interrupted takeover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recovery {
    /// Unix ms.
    pub at: i64,
    /// `auto` (found interrupted), `resume` or `abort` (asked by an operator).
    pub mode: String,
    /// The last phase the journal recorded before the interruption.
    pub last_phase: Option<Phase>,
    /// What the live topology showed.
    pub found: String,
    /// What was done, and why.
    pub action: String,
    /// The process (and node session, with several nodes) that settled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Owner>,
}

/// What a dry run found a takeover would do.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Plan {
    /// The ordered steps, each with the statements it would run on one instance.
    pub steps: Vec<PlannedStep>,
    /// Hook phase -> the hooks that would run (`file: phase`).
    pub hooks: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedStep {
    pub phase: Phase,
    pub instance: String,
    pub action: String,
    /// As they would run (passwords masked); positions known only at run time appear as `<...>`.
    pub statements: Vec<String>,
}

/// Why a takeover was refused before any change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub phase: Phase,
    /// The check that refused (`busy` and `unknown_cluster` name themselves).
    pub check: String,
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// Another takeover of the cluster is running.
    Busy,
    /// The hint names no cluster Baton can find.
    UnknownCluster,
    /// A check or the policy refused.
    Check,
    /// A pre hook vetoed.
    Veto,
    /// Something failed before any change (a server error, the store).
    Error,
}

impl TakeoverReport {
    pub fn phase(&self, p: Phase) -> Option<&PhaseRecord> {
        self.phases.iter().find(|r| r.name == p)
    }
}

/// Progress, as phases start and end (for the CLI's live output and the HTTP event stream).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PhaseEvent {
    Started { id: String, phase: Phase },
    Finished { id: String, record: PhaseRecord },
}

/// This machine's host name (a takeover's owner; orchestrator's `{orchestratorHost}` for hooks).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
