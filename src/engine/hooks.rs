//! The places where operator code runs during a takeover: the candidate policy and the hooks.
//! The engine asks a `ScriptSource` for the current `Scripts` once, when a takeover starts, and
//! keeps that version to the end (a reload meanwhile affects the next takeover only). The Lua host
//! (`crate::lua`) implements both traits; `NoScripts` runs nothing and leaves the choice to the
//! built-in ordering.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::plan::{Candidate, Excluded};
use crate::topology::{Cluster, InstanceKey};

/// The hook phases, in the order a takeover reaches them. `OnFailure` runs instead of the rest
/// when a takeover fails or is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPhase {
    /// Before any change. May veto.
    PreTakeover,
    /// Siblings relocated, master still writable (drain a proxy). May veto.
    PreFence,
    /// The new master is writable (switch the proxy's writer).
    PostPromote,
    /// The old master replicates from the new one.
    PostTakeover,
    /// The takeover failed; the context carries the error and what was rolled back.
    OnFailure,
}

impl HookPhase {
    pub const ALL: [HookPhase; 5] = [
        HookPhase::PreTakeover,
        HookPhase::PreFence,
        HookPhase::PostPromote,
        HookPhase::PostTakeover,
        HookPhase::OnFailure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookPhase::PreTakeover => "pre_takeover",
            HookPhase::PreFence => "pre_fence",
            HookPhase::PostPromote => "post_promote",
            HookPhase::PostTakeover => "post_takeover",
            HookPhase::OnFailure => "on_failure",
        }
    }

    pub fn from_name(name: &str) -> Option<HookPhase> {
        HookPhase::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A failing hook in this phase stops the takeover (before anything changed, or before the fence).
    pub fn may_veto(self) -> bool {
        matches!(self, HookPhase::PreTakeover | HookPhase::PreFence)
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long one engine phase took, as hooks see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseTiming {
    pub phase: String,
    pub ms: f64,
}

/// What a hook sees: a structured view of the takeover so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookContext {
    pub takeover_id: String,
    /// `graceful-master-takeover` or `graceful-master-takeover-auto`.
    pub command: String,
    /// The hook phase being run.
    pub phase: String,
    pub cluster: String,
    pub alias: Option<String>,
    pub old_master: Option<String>,
    pub successor: Option<String>,
    /// Every member below the master, reachable or not.
    pub replicas: Vec<String>,
    /// Members that could not be reached (downtimed ones left behind).
    pub lost_replicas: Vec<String>,
    /// The engine phases so far, in order.
    pub phase_timings: Vec<PhaseTiming>,
    pub dry_run: bool,
    /// The takeover's status when the hook runs (`running`, or the final one for `on_failure`).
    pub status: String,
    /// On failure: the first error.
    pub error: Option<String>,
    /// On failure: what the rollback did (one line per action), empty when nothing was undone.
    pub rolled_back: Vec<String>,
    /// The id of the scripts version running this takeover.
    pub scripts_version: Option<String>,
    /// The old master's semi-sync when the takeover started (None: the server has none); the
    /// takeover carries it over to the new master.
    #[serde(default)]
    pub semi_sync: Option<crate::topology::SemiSync>,
}

/// One loaded set of operator scripts, as recorded in the audit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScriptsVersion {
    /// Content hash of every file of the set.
    pub id: String,
    /// Unix milliseconds.
    pub loaded_at: u64,
    pub files: Vec<String>,
}

/// What the candidate policy decides from.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput {
    pub cluster: Cluster,
    pub master: InstanceKey,
    /// Replicas that passed the safety rules (in `plan::exclusion`), in key order.
    pub candidates: Vec<Candidate>,
    /// Replicas the safety rules ruled out, with why.
    pub excluded: Vec<Excluded>,
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Chosen { key: InstanceKey, reason: String },
    Refused { reason: String },
}

/// How a change a hook made to a server is undone, decided from the server's state just before.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Undo {
    /// The call changed nothing (the server was already in that state).
    Nothing,
    ReadOnly {
        on: bool,
    },
    StopReplication,
    StartReplication,
    /// Point the instance back at its previous source (GTID), running or not as before.
    Repoint {
        source: InstanceKey,
        start: bool,
    },
    /// It cannot be undone (killed connections stay killed); the rollback says so.
    Impossible {
        why: String,
    },
}

/// One call of a write primitive by a hook, recorded in the running phase (report, journal,
/// audit) and undone by a rollback before promotion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScriptOp {
    /// `file: phase` of the hook that called it.
    pub by: String,
    /// `read_only`, `stop_replication`, `start_replication`, `repoint`, `kill_connections`.
    pub primitive: String,
    pub instance: InstanceKey,
    /// The statements sent (passwords masked); empty when the call failed before sending any.
    pub statements: Vec<String>,
    pub ms: f64,
    /// The error, when the call failed (the server may then be in either state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub undo: Undo,
}

/// What running the hooks of one phase did.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// `Ok(summary)` of what ran; `Err(reason)` is a veto in a pre phase and a recorded failure after.
    pub result: Result<String, String>,
    /// The write primitives the hooks called, in order (also when a hook then failed).
    pub ops: Vec<ScriptOp>,
}

pub type HookFuture<'a> = Pin<Box<dyn Future<Output = HookRun> + Send + 'a>>;
/// `Err` is a failure of the policy itself (error, limit, bad answer), not a refusal.
pub type ChoiceFuture<'a> = Pin<Box<dyn Future<Output = Result<Choice, String>> + Send + 'a>>;

/// One version of the operator's code.
pub trait Scripts: Send + Sync {
    /// Runs the hooks of `phase` in order; the first failure stops the chain.
    fn run_hooks<'a>(&'a self, phase: HookPhase, ctx: &'a HookContext) -> HookFuture<'a>;
    /// Names of the hooks that would run at `phase` (`file:phase`).
    fn describe_hooks(&self, phase: HookPhase) -> Vec<String>;
    /// Runs only the hooks of `phase` whose files declare `idempotent = true` (a recovery, when
    /// a crash left it unknown whether the hooks ran).
    fn run_idempotent_hooks<'a>(&'a self, _phase: HookPhase, _ctx: &'a HookContext) -> HookFuture<'a> {
        Box::pin(async { HookRun { result: Ok("no idempotent hooks".to_string()), ops: Vec::new() } })
    }
    /// The hooks of `phase` that are not declared idempotent.
    fn non_idempotent_hooks(&self, phase: HookPhase) -> Vec<String> {
        self.describe_hooks(phase)
    }
    /// The candidate policy; None when none is configured (the built-in ordering decides).
    fn choose(&self, _input: Arc<PolicyInput>) -> Option<ChoiceFuture<'_>> {
        None
    }
    fn version(&self) -> Option<ScriptsVersion> {
        None
    }
}

/// Hands out the current version of the scripts.
pub trait ScriptSource: Send + Sync {
    fn current(&self) -> Arc<dyn Scripts>;
}

/// A fixed set of scripts (a Rust implementation, or a test's) is its own source.
impl<S: Scripts + Clone + 'static> ScriptSource for S {
    fn current(&self) -> Arc<dyn Scripts> {
        Arc::new(self.clone())
    }
}

/// No scripts: no hooks, built-in candidate ordering.
#[derive(Debug, Clone, Copy)]
pub struct NoScripts;

impl Scripts for NoScripts {
    fn run_hooks<'a>(&'a self, _phase: HookPhase, _ctx: &'a HookContext) -> HookFuture<'a> {
        Box::pin(async { HookRun { result: Ok("no hooks".to_string()), ops: Vec::new() } })
    }
    fn describe_hooks(&self, _phase: HookPhase) -> Vec<String> {
        Vec::new()
    }
}
