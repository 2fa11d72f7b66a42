//! The Lua host: loads the operator's candidate policy (`scripts/policy.lua`) and hooks
//! (`hooks/*.lua`) into a sandboxed VM, validates them, and serves them to the engine as one
//! immutable version (`LoadedScripts`). `ScriptHost` holds the current version and swaps in a new
//! one only when a reload loaded and validated everything; `watch` reloads on file changes and
//! SIGHUP.
//!
//! The contract with scripts (stable):
//! - `policy.lua` returns `{ choose = function(cluster, candidates) ... end }`; `choose` returns
//!   the chosen `"host:port"` and a reason, or `nil` and the reason to refuse.
//! - a hook file returns a table mapping phase names (`pre_takeover`, `pre_fence`,
//!   `post_promote`, `post_takeover`, `on_failure`) to functions of one context table; returning
//!   `false, "reason"` or raising an error fails the hook (a veto in a pre phase).
//!
//! Architecture invariant: Lua runs only through `vm::Vm::call`, under that call's instruction,
//! time and memory limits; the engine sees the host only through `engine::Scripts`.

pub mod api;
mod marshal;
pub mod pattern;
pub mod vm;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mlua::{FromLuaMulti, Function, IntoLuaMulti, MultiValue, Table, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::{
    Choice, ChoiceFuture, HookContext, HookFuture, HookPhase, HookRun, PolicyInput, ScriptOp, ScriptSource, Scripts,
    ScriptsVersion,
};
use crate::mysql::Connector;
use crate::store::Store;
use crate::topology::InstanceKey;
use vm::{Grant, Limits, Vm};

/// An error of the scripting layer. Names the file (or the call) and the cause; Lua errors carry
/// `file:line` and the traceback.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{file}: {message}")]
    Load { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{what}: {message}")]
    Call { what: String, message: String },
    #[error("{what}: {message}")]
    Limit { what: String, message: String },
    #[error("cannot set up the Lua VM: {0}")]
    Vm(String),
    #[error("cannot watch {path}: {message}")]
    Watch { path: String, message: String },
}

impl ScriptError {
    pub(crate) fn from_lua(what: &str, e: &mlua::Error) -> ScriptError {
        let message = match e {
            mlua::Error::MemoryError(m) => format!("memory limit exceeded: {m}"),
            other => other.to_string(),
        };
        ScriptError::Call { what: what.to_string(), message }
    }
}

/// What scripts reach through the `baton` module.
pub struct Env {
    pub cfg: Arc<Config>,
    pub connector: Arc<Connector>,
    /// `baton.query`'s connections: `scripts.query_user` where configured, else `connector`.
    pub query: Arc<Connector>,
    pub store: Arc<dyn Store>,
}

impl Env {
    pub fn new(cfg: &Config, store: Arc<dyn Store>) -> Arc<Env> {
        let connector = Arc::new(Connector::new(cfg));
        let query = match cfg.scripts.query_credentials(&cfg.topology) {
            Some(c) => Arc::new(Connector::with_credentials(cfg, c)),
            None => connector.clone(),
        };
        Arc::new(Env { cfg: Arc::new(cfg.clone()), connector, query, store })
    }
}

/// The files of one version, read from disk at once.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub scripts_dir: PathBuf,
    pub hooks_dir: PathBuf,
    /// The policy file (relative to scripts_dir), when one is configured.
    pub policy: Option<String>,
    /// Every `.lua` under scripts_dir (relative path -> text), except the `baton.d.lua` annotations.
    pub scripts: BTreeMap<String, String>,
    /// The hook files (file name -> text), in file-name order.
    pub hooks: BTreeMap<String, String>,
}

/// The annotations for editors; never loaded.
pub const ANNOTATIONS: &str = "baton.d.lua";

impl Sources {
    /// Reads the directories of the config.
    pub fn read(cfg: &Config) -> Result<Sources, ScriptError> {
        let policy = (!cfg.scripts.policy.is_empty()).then(|| cfg.scripts.policy.clone());
        Sources::read_dirs(&cfg.paths.scripts_dir, &cfg.paths.hooks_dir, policy)
    }

    pub fn read_dirs(scripts_dir: &Path, hooks_dir: &Path, policy: Option<String>) -> Result<Sources, ScriptError> {
        let mut s =
            Sources { scripts_dir: scripts_dir.into(), hooks_dir: hooks_dir.into(), policy, ..Default::default() };
        if scripts_dir.is_dir() {
            read_lua_files(scripts_dir, scripts_dir, true, &mut s.scripts)?;
        }
        if hooks_dir.is_dir() {
            read_lua_files(hooks_dir, hooks_dir, false, &mut s.hooks)?;
        }
        if let Some(p) = &s.policy {
            if !s.scripts.contains_key(p) {
                return Err(ScriptError::Io {
                    path: scripts_dir.join(p).display().to_string(),
                    message: "the configured policy (scripts.policy) does not exist as a regular file (symbolic links are not followed); set scripts.policy = \"\" for the built-in ordering".into(),
                });
            }
        }
        Ok(s)
    }

    /// The sources named on a command line (`baton script check PATH...`): a directory named like
    /// the configured hooks directory (or `hooks`) is a hooks directory, any other directory a
    /// scripts directory; a file in a hooks directory is one hook file, any other file a policy.
    pub fn for_paths(paths: &[PathBuf], cfg: &Config) -> Result<Sources, ScriptError> {
        let is_hooks_dir = |d: &Path| d == cfg.paths.hooks_dir || d.file_name().is_some_and(|n| n == "hooks");
        let mut s = Sources::default();
        let io = |p: &Path, m: &str| ScriptError::Io { path: p.display().to_string(), message: m.to_string() };
        for p in paths {
            if p.is_dir() {
                if is_hooks_dir(p) {
                    s.hooks_dir = p.clone();
                    read_lua_files(p, p, false, &mut s.hooks)?;
                } else {
                    s.scripts_dir = p.clone();
                    read_lua_files(p, p, true, &mut s.scripts)?;
                    let policy =
                        Some(cfg.scripts.policy.clone()).filter(|p| !p.is_empty() && s.scripts.contains_key(p));
                    s.policy = policy;
                }
            } else if p.is_file() {
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let text = std::fs::read_to_string(p).map_err(|e| io(p, &e.to_string()))?;
                if is_hooks_dir(&dir) {
                    s.hooks_dir = dir;
                    s.hooks.insert(name, text);
                } else {
                    // A policy. The root for require is the configured scripts directory when the
                    // file is inside it, else the file's own directory.
                    let root = match p.strip_prefix(&cfg.paths.scripts_dir) {
                        Ok(_) => cfg.paths.scripts_dir.clone(),
                        Err(_) => dir,
                    };
                    let rel = p.strip_prefix(&root).map(|r| r.to_string_lossy().replace('\\', "/")).unwrap_or(name);
                    read_lua_files(&root, &root, true, &mut s.scripts)?;
                    s.scripts.insert(rel.clone(), text);
                    s.scripts_dir = root;
                    s.policy = Some(rel);
                }
            } else {
                return Err(io(p, "no such file or directory"));
            }
        }
        Ok(s)
    }

    /// Content hash of every file, with its role and name.
    pub fn version_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("policy={:?}\n", self.policy));
        for (role, files) in [("scripts", &self.scripts), ("hooks", &self.hooks)] {
            for (name, text) in files {
                h.update(format!("{role}/{name}\n{}\n{text}\n", text.len()));
            }
        }
        h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    fn script_path(&self, rel: &str) -> String {
        self.scripts_dir.join(rel).display().to_string()
    }

    fn hook_path(&self, name: &str) -> String {
        self.hooks_dir.join(name).display().to_string()
    }

    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = self.scripts.keys().map(|k| self.script_path(k)).collect();
        v.extend(self.hooks.keys().map(|k| self.hook_path(k)));
        v
    }
}

/// Most files and directory levels one version may have: a directory that holds more is a
/// mistake (or a link loop someone made with a copy).
const MAX_FILES: usize = 1000;
const MAX_DEPTH: usize = 16;

/// Reads the `.lua` files of `dir`: regular files and real directories only. A symbolic link is
/// never followed (it could lead outside the directory, or back into it forever).
fn read_lua_files(
    root: &Path,
    dir: &Path,
    recursive: bool,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ScriptError> {
    read_lua_files_at(root, dir, recursive, 0, out)
}

fn read_lua_files_at(
    root: &Path,
    dir: &Path,
    recursive: bool,
    depth: usize,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ScriptError> {
    let io = |p: &Path, e: std::io::Error| ScriptError::Io { path: p.display().to_string(), message: e.to_string() };
    if depth > MAX_DEPTH {
        return Err(ScriptError::Io {
            path: dir.display().to_string(),
            message: format!("more than {MAX_DEPTH} directory levels"),
        });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // editor swap and backup files
        }
        // The entry itself, not what a link points at.
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_symlink() {
            if name.ends_with(".lua") {
                tracing::warn!(path = %path.display(), "a symbolic link in the scripts directory is not followed");
            }
            continue;
        }
        if kind.is_dir() {
            if recursive {
                read_lua_files_at(root, &path, true, depth + 1, out)?;
            }
            continue;
        }
        if !kind.is_file() || !name.ends_with(".lua") || name == ANNOTATIONS {
            continue;
        }
        if out.len() >= MAX_FILES {
            return Err(ScriptError::Io {
                path: root.display().to_string(),
                message: format!("more than {MAX_FILES} .lua files"),
            });
        }
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        out.insert(rel, text);
    }
    Ok(())
}

/// One hook function of one file.
struct HookFn {
    file: String,
    phase: HookPhase,
    func: Function,
    /// The file declares `idempotent = true`.
    idempotent: bool,
}

/// The Lua functions of one version. Behind an `Arc` so that a call's closure takes them to
/// the blocking thread it runs on without touching the VM on the async workers.
struct Fns {
    policy: Option<(String, Function)>,
    /// Builds the policy's arguments and calls it (`marshal`).
    policy_call: Function,
    hooks: Vec<HookFn>,
}

/// One loaded, validated, immutable version of the scripts.
pub struct LoadedScripts {
    vm: Vm,
    version: ScriptsVersion,
    fns: Arc<Fns>,
    /// `scripts.allow_writes`: hooks may call the write primitives.
    allow_writes: bool,
}

impl LoadedScripts {
    /// Builds a fresh VM and loads and validates every file; any error rejects the whole set.
    pub async fn load(sources: &Sources, env: Arc<Env>) -> Result<LoadedScripts, ScriptError> {
        let cfg = &env.cfg.scripts;
        let limits = Limits {
            memory_bytes: cfg.memory_limit_mb * 1024 * 1024,
            instructions: cfg.instruction_limit,
            timeout: Duration::from_millis(cfg.hook_timeout_ms),
        };
        let modules: BTreeMap<String, (String, String)> = sources
            .scripts
            .iter()
            .filter_map(|(rel, text)| {
                let name = rel.strip_suffix(".lua")?.replace('/', ".");
                Some((name, (format!("@{}", sources.script_path(rel)), text.clone())))
            })
            .collect();
        let vm = Vm::new(limits, modules)?;
        api::install(vm.lua(), env.clone()).map_err(|e| ScriptError::Vm(e.to_string()))?;

        let policy = match &sources.policy {
            Some(rel) => {
                let file = sources.script_path(rel);
                let t = exec_file(&vm, &file, &sources.scripts[rel]).await?;
                let choose = match t.as_ref().map(|t| t.raw_get::<Value>("choose")) {
                    Some(Ok(Value::Function(f))) => f,
                    _ => {
                        return Err(ScriptError::Invalid {
                            file,
                            message: "a policy must return a table with a function choose(cluster, candidates)".into(),
                        })
                    }
                };
                Some((file, choose))
            }
            None => None,
        };

        let mut hooks = Vec::new();
        for (name, text) in &sources.hooks {
            let file = sources.hook_path(name);
            let Some(t) = exec_file(&vm, &file, text).await? else {
                return Err(ScriptError::Invalid {
                    file,
                    message: "a hook file must return a table of phase = function(ctx) ... end".into(),
                });
            };
            let mut found: Vec<HookFn> = Vec::new();
            // `idempotent = true`: running this file's hooks twice is harmless, so a recovery
            // may run them again when a crash left it unknown whether they ran.
            let idempotent = match t.raw_get::<Value>("idempotent").map_err(|e| ScriptError::from_lua(&file, &e))? {
                Value::Nil => false,
                Value::Boolean(b) => b,
                other => {
                    return Err(ScriptError::Invalid {
                        file,
                        message: format!("idempotent must be true or false, not a {}", other.type_name()),
                    })
                }
            };
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| ScriptError::from_lua(&file, &e))?;
                let key = match &k {
                    Value::String(s) => s.to_str().map(|s| s.to_string()).unwrap_or_default(),
                    other => format!("<{}>", other.type_name()),
                };
                if key == "idempotent" {
                    continue;
                }
                let Some(phase) = HookPhase::from_name(&key) else {
                    let known: Vec<&str> = HookPhase::ALL.iter().map(|p| p.name()).collect();
                    return Err(ScriptError::Invalid {
                        file,
                        message: format!("unknown phase '{key}' (known phases: {})", known.join(", ")),
                    });
                };
                let Value::Function(func) = v else {
                    return Err(ScriptError::Invalid {
                        file,
                        message: format!("{key} must be a function, not a {}", v.type_name()),
                    });
                };
                found.push(HookFn { file: file.clone(), phase, func, idempotent });
            }
            found.sort_by_key(|h| HookPhase::ALL.iter().position(|p| *p == h.phase));
            hooks.extend(found);
        }

        let policy_call = marshal::compile(vm.lua()).map_err(|e| ScriptError::Vm(e.to_string()))?;
        let version = ScriptsVersion {
            id: sources.version_id(),
            loaded_at: crate::store::now_unix_ms() as u64,
            files: sources.files(),
        };
        let fns = Arc::new(Fns { policy, policy_call, hooks });
        Ok(LoadedScripts { vm, version, fns, allow_writes: env.cfg.scripts.allow_writes })
    }

    pub fn version_info(&self) -> &ScriptsVersion {
        &self.version
    }

    pub fn policy_file(&self) -> Option<&str> {
        self.fns.policy.as_ref().map(|(f, _)| f.as_str())
    }

    /// Why this version's VM was given up (a call that did not stop), if it was.
    pub fn failed(&self) -> Option<String> {
        self.vm.broken()
    }

    /// Runs the policy on `input` (also used offline by `baton script test`).
    pub async fn run_policy(&self, input: Arc<PolicyInput>) -> Result<Choice, ScriptError> {
        let Some((file, _)) = &self.fns.policy else {
            return Err(ScriptError::Invalid { file: "scripts.policy".into(), message: "no policy configured".into() });
        };
        let what = format!("{file}: choose");
        let (fns, w) = (self.fns.clone(), what.clone());
        let prepare = move |lua: &mlua::Lua| {
            let (_, choose) = fns.policy.as_ref().expect("checked above");
            let (cols, n, fill_candidate, cluster, fill_cluster) = marshal::policy_args(lua, input)?;
            let args = (choose.clone(), cols, n, fill_candidate, cluster, fill_cluster).into_lua_multi(lua)?;
            Ok((fns.policy_call.clone(), args))
        };
        let finish = move |lua: &mlua::Lua, out: MultiValue| -> Result<Choice, ScriptError> {
            let (chosen, reason) =
                <(Value, Value)>::from_lua_multi(out, lua).map_err(|e| ScriptError::from_lua(&w, &e))?;
            let reason = match reason {
                Value::Nil => "no reason given".to_string(),
                Value::String(s) => capped(&s.to_string_lossy()),
                other => {
                    return Err(ScriptError::Call {
                        what: w,
                        message: format!("the reason must be a string, not a {}", other.type_name()),
                    })
                }
            };
            match chosen {
                Value::Nil => Ok(Choice::Refused { reason }),
                Value::String(s) => {
                    let text = capped(&s.to_string_lossy());
                    let key: InstanceKey = text.parse().map_err(|e| ScriptError::Call {
                        what: w.clone(),
                        message: format!("returned '{text}', not host:port: {e}"),
                    })?;
                    Ok(Choice::Chosen { key, reason })
                }
                other => Err(ScriptError::Call {
                    what: w,
                    message: format!("must return a \"host:port\" string or nil, not a {}", other.type_name()),
                }),
            }
        };
        self.vm.call(&what, Grant::new("the policy", false, false), prepare, finish).await
    }

    /// Runs the hooks of `phase` in file-name order; the first failure stops the chain. The
    /// write primitives the hooks call (with `scripts.allow_writes`, never in a dry run) come
    /// back with the result, also when a hook then failed.
    pub async fn run_phase(&self, phase: HookPhase, ctx: &HookContext) -> HookRun {
        let mut ops = Vec::new();
        let result = self.run_phase_into(phase, ctx, false, &mut ops).await;
        HookRun { result, ops }
    }

    async fn run_phase_into(
        &self,
        phase: HookPhase,
        ctx: &HookContext,
        idempotent_only: bool,
        ops: &mut Vec<ScriptOp>,
    ) -> Result<String, String> {
        let mut ran = Vec::new();
        let writes = self.allow_writes && !ctx.dry_run;
        for (i, h) in
            self.fns.hooks.iter().enumerate().filter(|(_, h)| h.phase == phase && (h.idempotent || !idempotent_only))
        {
            let what = format!("{}: {}", h.file, phase);
            let start = Instant::now();
            let grant = Grant::new(what.clone(), writes, true);
            let (fns, context, w) = (self.fns.clone(), ctx.clone(), what.clone());
            let prepare = move |lua: &mlua::Lua| {
                Ok((fns.hooks[i].func.clone(), api::to_lua(lua, &context)?.into_lua_multi(lua)?))
            };
            // `false, reason` is a veto (or a failure after the fence); anything else is success.
            let finish = move |lua: &mlua::Lua, out: MultiValue| -> Result<Option<String>, ScriptError> {
                let (ok, reason) =
                    <(Value, Value)>::from_lua_multi(out, lua).map_err(|e| ScriptError::from_lua(&w, &e))?;
                Ok(match (ok, reason) {
                    (Value::Boolean(false), Value::String(s)) => {
                        Some(format!("{w} returned false: {}", capped(&s.to_string_lossy())))
                    }
                    (Value::Boolean(false), _) => Some(format!("{w} returned false (no reason given)")),
                    _ => None,
                })
            };
            let result = self.vm.call(&what, grant.clone(), prepare, finish).await;
            ops.extend(grant.take_ops());
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let failure = match result {
                Ok(veto) => veto,
                Err(e) => Some(capped(&e.to_string())),
            };
            if let Some(f) = failure {
                warn!(hook = %what, ms, "{f}");
                return Err(f);
            }
            info!(hook = %what, ms, "hook ran");
            ran.push(format!("{what} ok ({ms:.1} ms)"));
        }
        Ok(if ran.is_empty() { "no hooks".into() } else { ran.join("; ") })
    }

    pub fn hook_names(&self, phase: HookPhase) -> Vec<String> {
        self.fns.hooks.iter().filter(|h| h.phase == phase).map(|h| format!("{}: {}", h.file, phase)).collect()
    }
}

/// Runs a file's top-level chunk; returns the table it returned (None for anything else).
async fn exec_file(vm: &Vm, file: &str, text: &str) -> Result<Option<Table>, ScriptError> {
    let f = vm
        .lua()
        .load(text)
        .set_name(format!("@{file}"))
        .into_function()
        .map_err(|e| ScriptError::Load { file: file.into(), message: e.to_string() })?;
    // A file's top level runs at every load: reads only.
    let grant = Grant::new(format!("{file} (loading)"), false, false);
    vm.call(
        file,
        grant,
        move |_| Ok((f, MultiValue::new())),
        |_, out: MultiValue| {
            Ok(match out.into_iter().next() {
                Some(Value::Table(t)) => Some(t),
                _ => None,
            })
        },
    )
    .await
}

/// The longest text a script's answer (a reason, a log line) keeps.
pub const MAX_SCRIPT_TEXT: usize = 4096;

/// `text`, cut to `MAX_SCRIPT_TEXT` bytes (at a character boundary) with the cut said.
pub fn capped(text: &str) -> String {
    if text.len() <= MAX_SCRIPT_TEXT {
        return text.to_string();
    }
    let mut end = MAX_SCRIPT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... (cut: {} more bytes)", &text[..end], text.len() - end)
}

impl Scripts for LoadedScripts {
    fn run_hooks<'a>(&'a self, phase: HookPhase, ctx: &'a HookContext) -> HookFuture<'a> {
        Box::pin(self.run_phase(phase, ctx))
    }
    fn describe_hooks(&self, phase: HookPhase) -> Vec<String> {
        self.hook_names(phase)
    }
    fn run_idempotent_hooks<'a>(&'a self, phase: HookPhase, ctx: &'a HookContext) -> HookFuture<'a> {
        Box::pin(async move {
            let mut ops = Vec::new();
            let result = self.run_phase_into(phase, ctx, true, &mut ops).await;
            HookRun { result, ops }
        })
    }
    fn non_idempotent_hooks(&self, phase: HookPhase) -> Vec<String> {
        self.fns
            .hooks
            .iter()
            .filter(|h| h.phase == phase && !h.idempotent)
            .map(|h| format!("{}: {}", h.file, phase))
            .collect()
    }
    fn choose(&self, input: Arc<PolicyInput>) -> Option<ChoiceFuture<'_>> {
        self.fns.policy.as_ref()?;
        Some(Box::pin(async move { self.run_policy(input).await.map_err(|e| e.to_string()) }))
    }
    fn version(&self) -> Option<ScriptsVersion> {
        Some(self.version.clone())
    }
}

/// What a reload did, for subscribers (tests, the HTTP event stream, the log).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReloadEvent {
    Loaded {
        version: ScriptsVersion,
        ms: f64,
    },
    /// The new files were rejected; `kept` is the version still running.
    Failed {
        error: String,
        kept: String,
    },
}

/// The state of the host, for `baton script status` and the API.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptStatus {
    pub version: ScriptsVersion,
    pub policy: Option<String>,
    pub hooks: BTreeMap<String, Vec<String>>,
    /// The last reload's error, when the last reload failed (the running version is older).
    pub last_error: Option<String>,
    /// Why the running version was stopped (a call that did not end in time): every call of it
    /// fails until the scripts are reloaded.
    pub failed: Option<String>,
}

/// Holds the current version and replaces it on reload.
pub struct ScriptHost {
    env: Arc<Env>,
    current: ArcSwap<LoadedScripts>,
    last_error: Mutex<Option<String>>,
    events: broadcast::Sender<ReloadEvent>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl ScriptHost {
    /// Loads the configured scripts; an error here is the caller's to report (nothing runs).
    pub async fn start(env: Arc<Env>) -> Result<Arc<ScriptHost>, ScriptError> {
        let sources = Sources::read(&env.cfg)?;
        let loaded = LoadedScripts::load(&sources, env.clone()).await?;
        info!(version = %loaded.version.id, files = loaded.version.files.len(), "scripts loaded");
        let (events, _) = broadcast::channel(64);
        Ok(Arc::new(ScriptHost {
            env,
            current: ArcSwap::from_pointee(loaded),
            last_error: Mutex::new(None),
            events,
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.env.cfg
    }

    pub fn loaded(&self) -> Arc<LoadedScripts> {
        self.current.load_full()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    /// Reads and loads the files again; swaps them in only if everything loaded. On failure the
    /// running version stays and the error is kept for `status`.
    pub async fn reload(&self) -> Result<ScriptsVersion, ScriptError> {
        let _one = self.reloading.lock().await;
        let start = Instant::now();
        let result = match Sources::read(&self.env.cfg) {
            Ok(s) => LoadedScripts::load(&s, self.env.clone()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(loaded) => {
                let version = loaded.version.clone();
                self.current.store(Arc::new(loaded));
                *self.last_error.lock().expect("lock") = None;
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                info!(version = %version.id, ms, "scripts reloaded");
                let _ = self.events.send(ReloadEvent::Loaded { version: version.clone(), ms });
                Ok(version)
            }
            Err(e) => {
                let kept = self.current.load().version.id.clone();
                warn!(error = %e, kept = %kept, "scripts not reloaded; the running version stays");
                *self.last_error.lock().expect("lock") = Some(e.to_string());
                let _ = self.events.send(ReloadEvent::Failed { error: e.to_string(), kept });
                Err(e)
            }
        }
    }

    pub fn status(&self) -> ScriptStatus {
        let cur = self.current.load();
        ScriptStatus {
            version: cur.version.clone(),
            policy: cur.policy_file().map(str::to_string),
            hooks: HookPhase::ALL.iter().map(|p| (p.name().to_string(), cur.hook_names(*p))).collect(),
            last_error: self.last_error.lock().expect("lock").clone(),
            failed: cur.failed(),
        }
    }
}

impl ScriptSource for ScriptHost {
    fn current(&self) -> Arc<dyn Scripts> {
        self.current.load_full()
    }
}
