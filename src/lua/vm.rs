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

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

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
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "select",
    "tonumber",
    "tostring",
    "type",
    "xpcall",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "setmetatable",
    "getmetatable",
    "_G",
    "_VERSION",
    // libraries
    "table",
    "string",
    "math",
    "utf8",
    "coroutine",
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

/// A VM and its meter, shared with the blocking threads its calls run on.
pub struct VmCore {
    pub lua: Lua,
    meter: Arc<Meter>,
    grants: Arc<Grants>,
    pub limits: Limits,
    /// Set when a call did not stop in time: the VM is not called again (its version is failed).
    broken: Mutex<Option<String>>,
}

/// One sandboxed VM. Lua never runs on the async runtime's workers: each call runs on a blocking
/// thread (`spawn_blocking`), where the `baton` primitives still await MySQL through the runtime's
/// handle. A call that does not return within its time limit (plus a short grace) fails as a
/// timeout, and the VM is marked broken: a runaway inside a C function cannot be interrupted, but
/// the string functions are bounded (`bound_patterns`) so that it stops by itself soon after.
pub struct Vm {
    core: Arc<VmCore>,
}

/// Extra time a call's own thread gets past its limit before the VM is given up.
const GRACE: Duration = Duration::from_millis(500);

impl Vm {
    /// A fresh sandboxed VM. `modules` maps module names (`a.b`) to (chunk name, source) for
    /// `require`.
    pub fn new(limits: Limits, modules: BTreeMap<String, (String, String)>) -> Result<Vm, ScriptError> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
        let lua = Lua::new_with(libs, LuaOptions::default()).map_err(|e| ScriptError::Vm(e.to_string()))?;
        let meter = Arc::new(Meter::default());
        let setup = || -> mlua::Result<()> {
            let g = lua.globals();
            let names: Vec<String> = g.pairs::<String, Value>().filter_map(|kv| kv.ok().map(|(k, _)| k)).collect();
            for name in names {
                if !BASE_ALLOWED.contains(&name.as_str()) {
                    g.raw_set(name, Value::Nil)?;
                }
            }
            g.raw_set("require", make_require(&lua, modules)?)?;
            harden(&lua, meter.clone())?;
            Ok(())
        };
        setup().map_err(|e| ScriptError::Vm(e.to_string()))?;
        lua.set_memory_limit(limits.memory_bytes).map_err(|e| ScriptError::Vm(e.to_string()))?;
        let m = meter.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_lua, _debug| {
            let mut active = m.active.lock().unwrap_or_else(|p| p.into_inner());
            // Lua running outside any call (nothing should): stop it.
            let Some(b) = active.as_mut() else {
                return Err(mlua::Error::RuntimeError("Lua ran outside a call".into()));
            };
            if let Some(why) = &b.exceeded {
                // Past the limit, every instruction count raises, in every coroutine; the pcall
                // family re-raises it (`harden`), so nothing catches it for good.
                return Err(mlua::Error::RuntimeError(why.clone()));
            }
            b.instructions_left -= HOOK_EVERY as i64;
            if b.instructions_left < 0 {
                b.exceeded =
                    Some(format!("instruction limit exceeded ({} instructions per call)", limits.instructions));
            } else if Instant::now() > b.deadline {
                b.exceeded = Some(format!("time limit exceeded ({} ms per call)", limits.timeout.as_millis()));
            }
            Ok(if b.exceeded.is_some() { VmState::Yield } else { VmState::Continue })
        })
        .map_err(|e| ScriptError::Vm(e.to_string()))?;
        let grants = Arc::new(Grants::default());
        lua.set_app_data(grants.clone());
        Ok(Vm { core: Arc::new(VmCore { lua, meter, grants, limits, broken: Mutex::new(None) }) })
    }

    /// The VM's state, for loading (a fresh VM that no call uses yet).
    pub fn lua(&self) -> &Lua {
        &self.core.lua
    }

    /// Why this VM was given up, if it was.
    pub fn broken(&self) -> Option<String> {
        self.core.broken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Calls into Lua on a blocking thread, within this call's budgets and with what `grant`
    /// allows: `prepare` builds the function and its arguments (with the memory limit lifted: no
    /// Lua code runs there), `finish` turns the results into Rust values. Both run on that
    /// thread, so no Lua object is touched on the async workers. `what` names the call in errors.
    pub async fn call<T, P, F>(&self, what: &str, grant: Arc<Grant>, prepare: P, finish: F) -> Result<T, ScriptError>
    where
        T: Send + 'static,
        P: FnOnce(&Lua) -> mlua::Result<(Function, MultiValue)> + Send + 'static,
        F: FnOnce(&Lua, MultiValue) -> Result<T, ScriptError> + Send + 'static,
    {
        if let Some(why) = self.broken() {
            return Err(ScriptError::Limit {
                what: what.into(),
                message: format!("this scripts version was stopped ({why}); reload the scripts"),
            });
        }
        let (core, name, handle) = (self.core.clone(), what.to_string(), tokio::runtime::Handle::current());
        let limit = core.limits.timeout;
        let task = tokio::task::spawn_blocking(move || handle.block_on(core.run(&name, grant, prepare, finish)));
        match tokio::time::timeout(limit + GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ScriptError::Vm(format!("{what}: the call's thread failed: {e}"))),
            Err(_) => {
                let why = format!(
                    "{what} did not stop within its time limit of {} ms (inside a C function)",
                    limit.as_millis()
                );
                *self.core.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                Err(ScriptError::Limit {
                    what: what.into(),
                    message: format!("time limit exceeded: {why}; this VM is discarded"),
                })
            }
        }
    }
}

impl VmCore {
    async fn run<T, P, F>(&self, what: &str, grant: Arc<Grant>, prepare: P, finish: F) -> Result<T, ScriptError>
    where
        P: FnOnce(&Lua) -> mlua::Result<(Function, MultiValue)>,
        F: FnOnce(&Lua, MultiValue) -> Result<T, ScriptError>,
    {
        let (f, args) = {
            // No Lua code runs while the arguments are built, so the memory limit is lifted
            // meanwhile: with a limit, mlua protects every single table write, which made
            // building a thousand candidates cost more than the policy itself. The memory is
            // still counted once the limit is back.
            let _running = self.meter.exec.lock().unwrap_or_else(|p| p.into_inner());
            let lifted = self.lua.set_memory_limit(0);
            let built = lifted.and_then(|_| prepare(&self.lua));
            self.lua.set_memory_limit(self.limits.memory_bytes).map_err(|e| ScriptError::from_lua(what, &e))?;
            built.map_err(|e| ScriptError::from_lua(what, &e))?
        };
        let budget = Budget {
            deadline: Instant::now() + self.limits.timeout,
            instructions_left: self.limits.instructions as i64,
            exceeded: None,
        };
        // A coroutine of its own (not mlua's recycled implicit one), so that the primitives
        // find this call's grant by the coroutine calling them.
        let thread = self.lua.create_thread(f).map_err(|e| ScriptError::from_lua(what, &e))?;
        let ptr = thread.to_pointer() as usize;
        self.grants.0.lock().unwrap_or_else(|p| p.into_inner()).insert(ptr, grant);
        let _guard = GrantGuard { grants: self.grants.clone(), ptr };
        let call = thread.into_async::<MultiValue>(args).map_err(|e| ScriptError::from_lua(what, &e))?;
        let metered = Metered { inner: Box::pin(call), meter: self.meter.clone(), budget: Some(budget) };
        let result = match tokio::time::timeout(self.limits.timeout, metered).await {
            Err(_) => Err(ScriptError::Limit {
                what: what.into(),
                message: format!("time limit exceeded ({} ms per call)", self.limits.timeout.as_millis()),
            }),
            Ok(Err(MeteredError::Limit(message))) => Err(ScriptError::Limit { what: what.into(), message }),
            Ok(Err(MeteredError::Lua(e))) => Err(ScriptError::from_lua(what, &e)),
            Ok(Ok(v)) => finish(&self.lua, v),
        };
        if let Err(ScriptError::Limit { .. } | ScriptError::Call { .. }) = &result {
            // A memory bomb's garbage is unreachable now: give it back before the next call
            // (scripts have no finalizers: `harden` refuses __gc).
            let _running = self.meter.exec.lock().unwrap_or_else(|p| p.into_inner());
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

/// Where `harden` keeps Lua's own `setmetatable`, for Baton's own chunks (no `__gc` in them).
pub const RAW_SETMETATABLE: &str = "baton:raw_setmetatable";

/// A search whose rough bound is below this is not walked first (it is charged the bound).
const SMALL_SEARCH: f64 = 100_000.0;

/// Steps one string search may take at most, whatever is left of the call's budget.
const PATTERN_STEPS_MAX: u64 = 50_000_000;

/// Makes the limits hold everywhere a script can run:
/// - `pcall`, `xpcall`, `coroutine.resume` and `coroutine.close` re-raise a limit's error (the
///   hook raises it in every coroutine once the budget is out), so nothing swallows it;
/// - `setmetatable` refuses `__gc`: a finalizer runs whenever the collector decides, outside any
///   call's budget (and at every reload's `lua_close`);
/// - `string.find`, `match`, `gmatch` and `gsub` count their backtracking first
///   (`pattern::steps`) and refuse a search that would not fit the call's instruction budget.
fn harden(lua: &Lua, meter: Arc<Meter>) -> mlua::Result<()> {
    let m = meter.clone();
    let exceeded = lua.create_function(move |_, ()| {
        Ok(m.active.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|b| b.exceeded.clone()))
    })?;
    let g = lua.globals();
    lua.set_named_registry_value(RAW_SETMETATABLE, g.get::<Function>("setmetatable")?)?;
    let co: Table = g.get("coroutine")?;
    let wrap: Function = lua
        .load(
            r#"
local exceeded, raw_setmetatable, rawget, type, error, pcall, xpcall, resume, close, co, g = ...
local function check(...)
  local why = exceeded()
  if why then error(why, 0) end
  return ...
end
g.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("__gc finalizers are not available to Baton scripts", 2)
  end
  return raw_setmetatable(t, mt)
end
g.pcall = function(...) return check(pcall(...)) end
g.xpcall = function(...) return check(xpcall(...)) end
co.resume = function(...) return check(resume(...)) end
co.close = function(...) return check(close(...)) end
"#,
        )
        .set_name("=baton:harden")
        .into_function()?;
    wrap.call::<()>((
        exceeded,
        g.get::<Function>("setmetatable")?,
        g.get::<Function>("rawget")?,
        g.get::<Function>("type")?,
        g.get::<Function>("error")?,
        g.get::<Function>("pcall")?,
        g.get::<Function>("xpcall")?,
        co.get::<Function>("resume")?,
        co.get::<Function>("close")?,
        co,
        g.clone(),
    ))?;
    // The string functions: a search too small to run away (by a rough bound, computed in Lua
    // with the repetitions of each pattern cached) goes straight to Lua's own function; any
    // other is walked first in Rust (`count_pattern_steps`).
    let string: Table = g.get("string")?;
    let mut args: Vec<Value> = Vec::new();
    for name in ["find", "match", "gmatch", "gsub"] {
        let original: Function = string.get(name)?;
        let m = meter.clone();
        let o = original.clone();
        let counted = lua.create_function(move |_, args: MultiValue| {
            count_pattern_steps(&m, name, &args)?;
            o.call::<MultiValue>(args)
        })?;
        args.push(Value::Function(original));
        args.push(Value::Function(counted));
    }
    args.push(Value::Number(SMALL_SEARCH));
    args.push(Value::Table(string));
    lua.load(
        r#"
local find, cfind, match, cmatch, gmatch, cgmatch, gsub, cgsub, SMALL, string = ...
local type, select = type, select
local reps, n = {}, 0
-- Whether the search is small enough for Lua's own function: (#s + 1)^(r + 1) * (#p + 1), r the
-- pattern's repetitions (* + - ?, back-references and %b), bounds the steps of any search.
local function small(s, p)
  if type(s) ~= "string" or type(p) ~= "string" then return false end
  local r = reps[p]
  if not r then
    if n >= 1000 then reps, n = {}, 0 end
    r = select(2, gsub(p, "[%*%+%-%?]", "")) + select(2, gsub(p, "%%[%db]", ""))
    reps[p], n = r, n + 1
  end
  return (#s + 1) ^ (r + 1) * (#p + 1) <= SMALL
end
string.find = function(s, p, ...) if small(s, p) then return find(s, p, ...) end return cfind(s, p, ...) end
string.match = function(s, p, ...) if small(s, p) then return match(s, p, ...) end return cmatch(s, p, ...) end
string.gmatch = function(s, p, ...) if small(s, p) then return gmatch(s, p, ...) end return cgmatch(s, p, ...) end
string.gsub = function(s, p, ...) if small(s, p) then return gsub(s, p, ...) end return cgsub(s, p, ...) end
"#,
    )
    .set_name("=baton:strings")
    .call::<()>(MultiValue::from_vec(args))?;
    Ok(())
}

/// A string argument's bytes: Lua's own (no copy), or a number's text.
enum Bytes {
    Lua(mlua::BorrowedBytes),
    Own(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Lua(b) => b,
            Bytes::Own(v) => v,
        }
    }
}

fn count_pattern_steps(meter: &Meter, name: &str, args: &MultiValue) -> mlua::Result<()> {
    let text = |i: usize| match args.get(i) {
        Some(Value::String(s)) => Some(Bytes::Lua(s.as_bytes())),
        Some(Value::Integer(n)) => Some(Bytes::Own(n.to_string().into_bytes())),
        Some(Value::Number(n)) => Some(Bytes::Own(n.to_string().into_bytes())),
        _ => None,
    };
    let int = |i: usize| match args.get(i) {
        Some(Value::Integer(n)) => Some(*n),
        Some(Value::Number(n)) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    };
    let (Some(subject), Some(pat)) = (text(0), text(1)) else { return Ok(()) };
    let plain = name == "find" && args.get(3).is_some_and(|v| !matches!(v, Value::Nil | Value::Boolean(false)));
    let specials = pat.iter().any(|c| b"^$*+?.([%-".contains(c));
    if plain || (name == "find" && !specials) {
        return Ok(());
    }
    let mut active = meter.active.lock().unwrap_or_else(|p| p.into_inner());
    let Some(budget) = active.as_mut() else { return Err(mlua::Error::RuntimeError("Lua ran outside a call".into())) };
    // Small searches (a host:port, a version) are bounded without walking them: every start
    // position times every way the repetitions can split the subject, times the pattern.
    let repetitions = (pat.iter().filter(|c| b"*+-?".contains(c)).count()
        + pat.windows(2).filter(|w| w[0] == b'%' && (w[1].is_ascii_digit() || w[1] == b'b')).count())
        as i32;
    let rough = ((subject.len() + 1) as f64).powi(repetitions + 1) * (pat.len() + 1) as f64;
    if rough <= SMALL_SEARCH {
        budget.instructions_left -= rough as i64;
        return Ok(());
    }
    let (mode, init) = match name {
        "gsub" => (super::pattern::Mode::Gsub { max: int(3).map(|n| n.max(0) as u64) }, None),
        "gmatch" => (super::pattern::Mode::Gmatch, int(2)),
        _ => (super::pattern::Mode::First, int(2)),
    };
    let Some(from) = super::pattern::start(subject.len(), init) else { return Ok(()) };
    let limit = (budget.instructions_left.max(0) as u64).min(PATTERN_STEPS_MAX);
    let counted = super::pattern::steps(&subject, &pat, from, mode, limit, Some(budget.deadline));
    let spent = match &counted {
        Ok(n) => *n,
        Err(_) => limit,
    };
    budget.instructions_left -= spent as i64;
    match counted {
        Err(super::pattern::Stop::Budget) => Err(mlua::Error::RuntimeError(format!(
            "string.{name}: this pattern backtracks past the call's budget ({limit} steps, or its time limit) on a subject of {} bytes; \
             simplify the pattern or shorten the subject",
            subject.len()
        ))),
        _ => Ok(()),
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
        let valid = !name.is_empty()
            && name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !valid {
            return Err(mlua::Error::RuntimeError(format!(
                "require '{name}': not a module name (letters, digits, _ and .)"
            )));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(timeout_ms: u64) -> Vm {
        let limits =
            Limits { memory_bytes: 16 << 20, instructions: 10_000_000, timeout: Duration::from_millis(timeout_ms) };
        Vm::new(limits, BTreeMap::new()).unwrap()
    }

    async fn run(vm: &Vm, code: &str) -> Result<(), ScriptError> {
        let f = vm.lua().load(code).into_function().unwrap();
        vm.call("test", Grant::new("test", false, false), move |_| Ok((f, MultiValue::new())), |_, _| Ok(())).await
    }

    /// A call stuck inside a C function past its limit (here a Rust function that sleeps, as a
    /// runaway C call would spin) fails as a timeout; the VM is given up and every later call
    /// fails at once, naming why. The async workers were never blocked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_stuck_in_c_fails_and_the_vm_is_given_up() {
        let vm = vm(50);
        let stuck = vm.lua().create_function(|_, ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        });
        vm.lua().globals().set("stuck", stuck.unwrap()).unwrap();
        let ticker = tokio::spawn(async {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(100)).await;
            start.elapsed()
        });
        let e = run(&vm, "stuck(1500)").await.unwrap_err().to_string();
        assert!(e.contains("did not stop within its time limit of 50 ms") && e.contains("discarded"), "{e}");
        assert!(ticker.await.unwrap() < Duration::from_millis(1000), "an async worker was blocked");
        let e = run(&vm, "return 1").await.unwrap_err().to_string();
        assert!(e.contains("this scripts version was stopped"), "{e}");
        assert!(vm.broken().is_some());
    }

    /// Limits reach into coroutines under nested pcalls, finalizers are refused, patterns that
    /// backtrack are refused before they run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_hold_in_coroutines_finalizers_and_patterns() {
        let vm = vm(2000);
        let busy = "while true do pcall(function() pcall(function() coroutine.wrap(function() while true do end end)() end) end) end";
        let e = run(&vm, busy).await.unwrap_err().to_string();
        assert!(e.contains("instruction limit exceeded"), "{e}");
        let e = run(&vm, "local co = coroutine.create(function() while true do end end) while true do coroutine.resume(co) co = coroutine.create(function() while true do end end) end").await.unwrap_err().to_string();
        assert!(e.contains("limit exceeded"), "{e}");
        let e =
            run(&vm, "setmetatable({}, { __gc = function() while true do end end })").await.unwrap_err().to_string();
        assert!(e.contains("__gc finalizers are not available"), "{e}");
        let e = run(&vm, "string.find(string.rep('a', 40), '.-.-.-.-.-.-.-b')").await.unwrap_err().to_string();
        assert!(e.contains("string.find: this pattern backtracks"), "{e}");
        let e =
            run(&vm, "local s = string.rep('a', 40) return s:match('a*a*a*a*a*a*a*b')").await.unwrap_err().to_string();
        assert!(e.contains("string.match"), "{e}");
        let e =
            run(&vm, "for w in string.rep('a', 40):gmatch('.-.-.-.-.-.-.-b') do end").await.unwrap_err().to_string();
        assert!(e.contains("string.gmatch"), "{e}");
        // Ordinary string work still works, and the VM is fine afterwards.
        run(&vm, "assert(('Slave_IO_Running: Yes'):match('^(%S+):%s+(%S+)') == 'Slave_IO_Running')").await.unwrap();
        run(&vm, "assert(select(2, ('a b c'):gsub('%s', '_')) == 2) assert(('x.y'):find('.', 1, true) == 2)")
            .await
            .unwrap();
        run(&vm, "local n = 0 for _ in ('1,2,3'):gmatch('%d') do n = n + 1 end assert(n == 3)").await.unwrap();
        assert!(vm.broken().is_none());
    }
}
