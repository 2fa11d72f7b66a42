//! One sandboxed Lua 5.4 VM: only the table, string, math, utf8 and coroutine libraries, a
//! `require` that reads only the scripts of the loaded version, a memory limit, and per-call
//! instruction and time budgets enforced by a global instruction-count hook.
//!
//! Every entry into Lua goes through `Vm::call`, which runs the function as a coroutine
//! (`call_async`, so `baton.*` primitives can await) and installs that call's budget each time
//! the coroutine is polled. When a budget runs out, the hook yields the coroutine and the call
//! ends with an error naming the limit; the coroutine is never resumed again, so not even a
//! `pcall` loop keeps it alive.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mlua::{FromLuaMulti, Function, HookTriggers, IntoLuaMulti, Lua, LuaOptions, StdLib, Table, Value, VmState};

use super::ScriptError;
use crate::engine::ScriptOp;

/// What one call into Lua may do. The `baton` primitives find it through the coroutine that
/// calls them (`grant_of`): the policy is pure (no writes, no shell, no HTTP), a file's top level
/// runs at load time with reads only, hooks get writes only with `scripts.allow_writes`.
/// Coroutines a script creates itself get nothing beyond reads.
#[derive(Debug, Default)]
pub struct Grant {
    /// Who is calling, for errors and the record: `policy`, `load`, or `file: phase`.
    pub who: String,
    pub writes: bool,
    /// `baton.shell` and `baton.http.post` (each still behind its own switch).
    pub outside: bool,
    /// The write primitives called under this grant, in order.
    pub ops: Mutex<Vec<ScriptOp>>,
}

impl Grant {
    pub fn new(who: impl Into<String>, writes: bool, outside: bool) -> Arc<Grant> {
        Arc::new(Grant { who: who.into(), writes, outside, ops: Mutex::new(Vec::new()) })
    }

    pub fn take_ops(&self) -> Vec<ScriptOp> {
        std::mem::take(&mut *self.ops.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The grant of each call running in a VM, by the address of the coroutine running it.
#[derive(Default)]
struct Grants(Mutex<HashMap<usize, Arc<Grant>>>);

/// The grant of the coroutine calling into Rust right now (None: a coroutine the script made,
/// or no call at all).
pub fn grant_of(lua: &Lua) -> Option<Arc<Grant>> {
    let ptr = lua.current_thread().to_pointer() as usize;
    let grants = lua.app_data_ref::<Arc<Grants>>()?;
    let found = grants.0.lock().unwrap_or_else(|p| p.into_inner()).get(&ptr).cloned();
    found
}

/// Removes a call's grant when the call ends, however it ends.
struct GrantGuard {
    grants: Arc<Grants>,
    ptr: usize,
}

impl Drop for GrantGuard {
    fn drop(&mut self) {
        self.grants.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.ptr);
    }
}

/// The limits of one VM and of each call into it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub instructions: u64,
    pub timeout: Duration,
}

/// Instructions between two checks of the budget.
const HOOK_EVERY: u32 = 1000;

/// Base functions scripts keep; everything else in the global table is removed.
const BASE_ALLOWED: &[&str] = &[
    "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type", "xpcall",
    "rawequal", "rawget", "rawlen", "rawset", "setmetatable", "getmetatable", "_G", "_VERSION",
    // libraries
    "table", "string", "math", "utf8", "coroutine",
];

struct Budget {
    deadline: Instant,
    instructions_left: i64,
    exceeded: Option<String>,
}

/// The budget of the call running in the VM right now.
#[derive(Default)]
struct Meter {
    /// Held while Lua runs for one call, so that the active budget is that call's.
    exec: Mutex<()>,
    active: Mutex<Option<Budget>>,
}

pub struct Vm {
    pub lua: Lua,
    meter: Arc<Meter>,
    grants: Arc<Grants>,
    pub limits: Limits,
}

impl Vm {
    /// A fresh sandboxed VM. `modules` maps module names (`a.b`) to (chunk name, source) for
    /// `require`.
    pub fn new(limits: Limits, modules: BTreeMap<String, (String, String)>) -> Result<Vm, ScriptError> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::default()).map_err(|e| ScriptError::Vm(e.to_string()))?;
        let setup = || -> mlua::Result<()> {
            let g = lua.globals();
            let names: Vec<String> = g.pairs::<String, Value>().filter_map(|kv| kv.ok().map(|(k, _)| k)).collect();
            for name in names {
                if !BASE_ALLOWED.contains(&name.as_str()) {
                    g.raw_set(name, Value::Nil)?;
                }
            }
            g.raw_set("require", make_require(&lua, modules)?)?;
            Ok(())
        };
        setup().map_err(|e| ScriptError::Vm(e.to_string()))?;
        lua.set_memory_limit(limits.memory_bytes).map_err(|e| ScriptError::Vm(e.to_string()))?;
        let meter = Arc::new(Meter::default());
        let m = meter.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_lua, _debug| {
            let mut active = m.active.lock().expect("meter");
            let Some(b) = active.as_mut() else { return Ok(VmState::Continue) };
            if let Some(why) = &b.exceeded {
                // The yield did not happen (a non-yieldable C boundary): raise instead.
                return Err(mlua::Error::RuntimeError(why.clone()));
            }
            b.instructions_left -= HOOK_EVERY as i64;
            if b.instructions_left < 0 {
                b.exceeded = Some(format!("instruction limit exceeded ({} instructions per call)", limits.instructions));
            } else if Instant::now() > b.deadline {
                b.exceeded = Some(format!("time limit exceeded ({} ms per call)", limits.timeout.as_millis()));
            }
            Ok(if b.exceeded.is_some() { VmState::Yield } else { VmState::Continue })
        })
        .map_err(|e| ScriptError::Vm(e.to_string()))?;
        let grants = Arc::new(Grants::default());
        lua.set_app_data(grants.clone());
        Ok(Vm { lua, meter, grants, limits })
    }

    /// Builds arguments for a call (Rust values to Lua tables). No Lua code runs here, so the
    /// memory limit is lifted meanwhile: with a limit, mlua protects every single table write,
    /// which made building a thousand candidates cost more than the policy itself. The memory is
    /// still counted once the limit is back.
    pub fn build<T>(&self, f: impl FnOnce(&Lua) -> mlua::Result<T>) -> mlua::Result<T> {
        let _running = self.meter.exec.lock().unwrap_or_else(|p| p.into_inner());
        self.lua.set_memory_limit(0)?;
        let out = f(&self.lua);
        self.lua.set_memory_limit(self.limits.memory_bytes)?;
        out
    }

    /// Calls `f` within this call's budgets, with what `grant` allows. `what` names the call in
    /// errors.
    pub async fn call<R: FromLuaMulti + Send + 'static>(
        &self,
        what: &str,
        f: &Function,
        args: impl IntoLuaMulti,
        grant: Arc<Grant>,
    ) -> Result<R, ScriptError> {
        let budget = Budget {
            deadline: Instant::now() + self.limits.timeout,
            instructions_left: self.limits.instructions as i64,
            exceeded: None,
        };
        // A coroutine of its own (not mlua's recycled implicit one), so that the primitives
        // find this call's grant by the coroutine calling them.
        let thread = self.lua.create_thread(f.clone()).map_err(|e| ScriptError::from_lua(what, &e))?;
        let ptr = thread.to_pointer() as usize;
        self.grants.0.lock().unwrap_or_else(|p| p.into_inner()).insert(ptr, grant);
        let _guard = GrantGuard { grants: self.grants.clone(), ptr };
        let call = thread.into_async::<R>(args).map_err(|e| ScriptError::from_lua(what, &e))?;
        let metered = Metered { inner: Box::pin(call), meter: self.meter.clone(), budget: Some(budget) };
        let result = match tokio::time::timeout(self.limits.timeout, metered).await {
            Err(_) => Err(ScriptError::Limit {
                what: what.into(),
                message: format!("time limit exceeded ({} ms per call)", self.limits.timeout.as_millis()),
            }),
            Ok(Err(MeteredError::Limit(message))) => Err(ScriptError::Limit { what: what.into(), message }),
            Ok(Err(MeteredError::Lua(e))) => Err(ScriptError::from_lua(what, &e)),
            Ok(Ok(v)) => Ok(v),
        };
        if let Err(ScriptError::Limit { .. } | ScriptError::Call { .. }) = &result {
            // A memory bomb's garbage is unreachable now: give it back before the next call.
            let _ = self.lua.gc_collect();
        }
        result
    }
}

enum MeteredError {
    Limit(String),
    Lua(mlua::Error),
}

/// A Lua coroutine call whose budget is installed while it runs.
struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: Arc<Meter>,
    budget: Option<Budget>,
}

impl<R, F: Future<Output = mlua::Result<R>>> Future for Metered<F> {
    type Output = Result<R, MeteredError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let meter = self.meter.clone();
        let _running = meter.exec.lock().unwrap_or_else(|p| p.into_inner());
        *meter.active.lock().expect("meter") = self.budget.take();
        let polled = self.inner.as_mut().poll(cx);
        self.budget = meter.active.lock().expect("meter").take();
        if let Some(why) = self.budget.as_ref().and_then(|b| b.exceeded.clone()) {
            return Poll::Ready(Err(MeteredError::Limit(why)));
        }
        polled.map(|r| r.map_err(MeteredError::Lua))
    }
}

/// `require(name)`: only modules of the scripts directory, loaded once per VM.
fn make_require(lua: &Lua, modules: BTreeMap<String, (String, String)>) -> mlua::Result<Function> {
    let loaded: Table = lua.create_table()?;
    let key = lua.create_registry_value(loaded)?;
    lua.create_function(move |lua, name: String| {
        let loaded: Table = lua.registry_value(&key)?;
        if let Some(v) = loaded.raw_get::<Option<Value>>(name.as_str())? {
            return Ok(v);
        }
        let valid = !name.is_empty() && name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return Err(mlua::Error::RuntimeError(format!("require '{name}': not a module name (letters, digits, _ and .)")));
        }
        let Some((chunk, source)) = modules.get(&name) else {
            let path = format!("{}.lua", name.replace('.', "/"));
            let std = ["os", "io", "debug", "package", "ffi", "jit"];
            let hint = if std.contains(&name.as_str()) {
                format!(" (the {name} library is not available to Baton scripts)")
            } else {
                String::new()
            };
            return Err(mlua::Error::RuntimeError(format!(
                "require '{name}': no module {path} in the scripts directory{hint}"
            )));
        };
        let v: Value = lua.load(source.as_str()).set_name(chunk.as_str()).call(name.as_str())?;
        let v = if v.is_nil() { Value::Boolean(true) } else { v };
        loaded.raw_set(name.as_str(), v.clone())?;
        Ok(v)
    })
}
