//! The places where operator code runs during a takeover. The engine calls `Hooks` at fixed phases;
//! a pre-phase hook may veto. The Lua host implements this trait; `NoHooks` runs nothing.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::report::Phase;

/// What a hook sees: a structured view of the takeover so far.
#[derive(Debug, Clone, Serialize)]
pub struct HookContext {
    pub takeover_id: String,
    pub command: String,
    pub cluster: String,
    pub alias: Option<String>,
    pub old_master: Option<String>,
    pub successor: Option<String>,
    pub replicas: Vec<String>,
    pub lost_replicas: Vec<String>,
    /// (phase, duration ms) of the phases so far.
    pub phase_timings: Vec<(String, f64)>,
    pub dry_run: bool,
    /// On failure: the error and what was rolled back.
    pub error: Option<String>,
}

pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

pub trait Hooks: Send + Sync {
    /// Runs the hooks of `phase`. `Err(reason)` from a pre phase is a veto; from a post phase it is
    /// recorded and the takeover goes on.
    fn run<'a>(&'a self, phase: Phase, ctx: &'a HookContext) -> HookFuture<'a>;
    /// Names of the hooks that would run at `phase` (for plans and reports).
    fn describe(&self, phase: Phase) -> Vec<String>;
}

/// No hooks configured.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn run<'a>(&'a self, _phase: Phase, _ctx: &'a HookContext) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    fn describe(&self, _phase: Phase) -> Vec<String> {
        Vec::new()
    }
}
