//! The `baton` module scripts see: reads of the topology, the core's primitives, capabilities
//! outside MySQL (shell, HTTP; off unless the config switches them on), logging and time.
//! Every function that waits is async: scripts run as coroutines and never block the runtime.
//! Errors are raised as Lua errors whose message names the instance and the cause.
//! `scripts/baton.d.lua` documents this module for editors; keep the two in step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::Serialize;

use super::vm::{self, Grant};
use super::Env;
use crate::discovery;
use crate::engine::{ScriptOp, Undo};
use crate::mysql::ops::OpRecord;
use crate::mysql::{ops, SourcePosition, SourceSpec, SqlError};
use crate::topology::{Flavor, InstanceKey};

/// Serializes Rust values for Lua: `None` becomes nil (not a null sentinel).
pub fn to_lua<T: Serialize + ?Sized>(lua: &Lua, v: &T) -> mlua::Result<Value> {
    lua.to_value_with(
        v,
        mlua::serde::SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false),
    )
}

fn err(msg: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(msg.to_string())
}

fn key(s: &str) -> mlua::Result<InstanceKey> {
    s.parse::<InstanceKey>().map_err(|e| err(format!("'{s}' is not host:port: {e}")))
}

/// `file:line` of the Lua code calling into Rust.
fn caller(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let src = d.source().short_src.map(|s| s.into_owned()).unwrap_or_else(|| "?".into());
        format!("{src}:{}", d.current_line().map(|l| l.to_string()).unwrap_or_else(|| "?".into()))
    })
    .unwrap_or_else(|| "?".into())
}

/// Installs the `baton` global.
pub fn install(lua: &Lua, env: Arc<Env>) -> mlua::Result<()> {
    let baton = lua.create_table()?;
    baton.set("settings", to_lua(lua, &env.cfg.scripts.settings)?)?;
    baton.set("host", crate::engine::report::host_name())?;

    // ---- logging and time ----
    let log = lua.create_table()?;
    log.set(
        "info",
        lua.create_function(|lua, msg: String| {
            tracing::info!(script = %caller(lua), "{}", super::capped(&msg));
            Ok(())
        })?,
    )?;
    log.set(
        "warn",
        lua.create_function(|lua, msg: String| {
            tracing::warn!(script = %caller(lua), "{}", super::capped(&msg));
            Ok(())
        })?,
    )?;
    log.set(
        "error",
        lua.create_function(|lua, msg: String| {
            tracing::error!(script = %caller(lua), "{}", super::capped(&msg));
            Ok(())
        })?,
    )?;
    baton.set("log", log)?;
    lua.globals().set(
        "print",
        lua.create_function(|lua, args: mlua::Variadic<Value>| {
            let parts: Vec<String> = args.iter().map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}"))).collect();
            tracing::info!(script = %caller(lua), "{}", super::capped(&parts.join("\t")));
            Ok(())
        })?,
    )?;
    baton.set("now", lua.create_function(|_, ()| Ok(crate::store::now_unix_ms() as f64 / 1000.0))?)?;
    baton.set(
        "sleep",
        lua.create_async_function(|_, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })?,
    )?;

    // ---- topology reads ----
    let e = env.clone();
    baton.set(
        "cluster",
        lua.create_async_function(move |lua, hint: String| {
            let e = e.clone();
            async move {
                let c = discovery::discover_hint(&e.connector, &e.cfg, e.store.as_ref(), &hint).await.map_err(err)?;
                to_lua(&lua, &c)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "instance",
        lua.create_async_function(move |lua, k: String| {
            let e = e.clone();
            async move {
                let i = crate::mysql::probe(&e.connector, &key(&k)?).await.map_err(err)?;
                to_lua(&lua, &i)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "query",
        lua.create_async_function(move |lua, (k, sql, params): (String, String, Option<Vec<Value>>)| {
            let e = e.clone();
            async move {
                let params = params.unwrap_or_default().into_iter().map(sql_param).collect::<mlua::Result<Vec<_>>>()?;
                let rows = ops::read_query(&e.query, &key(&k)?, &sql, params).await.map_err(err)?;
                let out = lua.create_table()?;
                for r in rows {
                    let t = lua.create_table()?;
                    for (col, v) in r.0 {
                        t.set(col, v)?;
                    }
                    out.push(t)?;
                }
                Ok(out)
            }
        })?,
    )?;

    // ---- primitives (hooks with scripts.allow_writes only; each call recorded with its undo) ----
    let e = env.clone();
    baton.set(
        "read_only",
        lua.create_async_function(move |lua, (k, on): (String, bool)| {
            let (e, grant) = (e.clone(), granted(&lua, "read_only", Need::Writes));
            async move {
                let (grant, k) = (grant?, key(&k)?);
                let before = state_before(&e, &k).await?;
                let undo = if before.read_only != on { Undo::ReadOnly { on: before.read_only } } else { Undo::Nothing };
                let r = ops::set_read_only(&e.connector, &k, on, e.cfg.takeover.fence_lock_wait_s).await;
                to_lua(&lua, &recorded(&grant, "read_only", &k, undo, r)?)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "stop_replication",
        lua.create_async_function(move |lua, k: String| {
            let (e, grant) = (e.clone(), granted(&lua, "stop_replication", Need::Writes));
            async move {
                let (grant, k) = (grant?, key(&k)?);
                let running = state_before(&e, &k).await?.replication.is_some_and(|r| r.running());
                let undo = if running { Undo::StartReplication } else { Undo::Nothing };
                let r = ops::stop_replication(&e.connector, &k).await;
                to_lua(&lua, &recorded(&grant, "stop_replication", &k, undo, r)?)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "start_replication",
        lua.create_async_function(move |lua, k: String| {
            let (e, grant) = (e.clone(), granted(&lua, "start_replication", Need::Writes));
            async move {
                let (grant, k) = (grant?, key(&k)?);
                let stopped = state_before(&e, &k).await?.replication.is_some_and(|r| !r.running());
                let undo = if stopped { Undo::StopReplication } else { Undo::Nothing };
                let r = ops::start_replication(&e.connector, &k).await;
                to_lua(&lua, &recorded(&grant, "start_replication", &k, undo, r)?)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "repoint",
        lua.create_async_function(move |lua, (k, source, opts): (String, String, Option<Table>)| {
            let (e, grant) = (e.clone(), granted(&lua, "repoint", Need::Writes));
            async move {
                let (grant, k, source) = (grant?, key(&k)?, key(&source)?);
                let start =
                    opts.as_ref().map(|o| o.get::<Option<bool>>("start")).transpose()?.flatten().unwrap_or(true);
                let flavor = e.connector.dialect(&k).await.map_err(err)?.flavor();
                let position = match (
                    flavor,
                    opts.as_ref().map(|o| o.get::<Option<String>>("position")).transpose()?.flatten().as_deref(),
                ) {
                    (Flavor::MySql, _) => SourcePosition::AutoPosition,
                    (_, None | Some("slave_pos")) => SourcePosition::GtidSlavePos,
                    (_, Some("current_pos")) => SourcePosition::GtidCurrentPos,
                    (_, Some(other)) => {
                        return Err(err(format!("repoint: position '{other}' is not slave_pos or current_pos")))
                    }
                };
                let undo = match state_before(&e, &k).await?.replication {
                    Some(r) => Undo::Repoint { source: r.source.clone(), start: r.running() },
                    None => Undo::Impossible {
                        why: format!("{k} did not replicate before; stop and reset its replication by hand"),
                    },
                };
                let r = &e.cfg.replication;
                let spec = SourceSpec {
                    host: source.host.clone(),
                    port: source.port,
                    user: r.user.clone(),
                    password: r.password.clone(),
                    position,
                    tls: r.tls,
                };
                let r = ops::repoint(&e.connector, &k, &spec, start).await;
                to_lua(&lua, &recorded(&grant, "repoint", &k, undo, r)?)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "wait_for_position",
        lua.create_async_function(move |lua, (k, gtid, timeout_ms): (String, String, Option<u64>)| {
            let e = e.clone();
            async move {
                let k = key(&k)?;
                let d = e.connector.dialect(&k).await.map_err(err)?;
                let limit = Duration::from_millis(timeout_ms.unwrap_or(e.cfg.takeover.catchup_timeout_ms));
                to_lua(&lua, &ops::wait_for_gtid(&e.connector, d.as_ref(), &k, &gtid, limit).await.map_err(err)?)
            }
        })?,
    )?;
    let e = env.clone();
    baton.set(
        "kill_connections",
        lua.create_async_function(move |lua, k: String| {
            let (e, grant) = (e.clone(), granted(&lua, "kill_connections", Need::Writes));
            async move {
                let (grant, k) = (grant?, key(&k)?);
                let undo = Undo::Impossible { why: "killed client connections cannot be restored".into() };
                let r = ops::kill_client_connections(&e.connector, &k, &e.cfg.topology.user).await;
                to_lua(&lua, &recorded(&grant, "kill_connections", &k, undo, r)?)
            }
        })?,
    )?;

    // ---- capabilities outside MySQL ----
    let e = env.clone();
    baton.set(
        "shell",
        lua.create_async_function(move |lua, (cmd, opts): (String, Option<Table>)| {
            let (e, grant) = (e.clone(), granted(&lua, "shell", Need::Outside));
            async move {
                grant?;
                if !e.cfg.scripts.allow_shell {
                    return Err(err(format!(
                        "baton.shell is switched off: set scripts.allow_shell = true in {}",
                        e.cfg.origin
                    )));
                }
                let env_vars: BTreeMap<String, String> = opt(&opts, "env")?.unwrap_or_default();
                let timeout =
                    Duration::from_millis(opt::<u64>(&opts, "timeout")?.unwrap_or(e.cfg.scripts.hook_timeout_ms));
                let out = run_shell(&cmd, &env_vars, timeout).await.map_err(err)?;
                to_lua(&lua, &out)
            }
        })?,
    )?;
    let http = lua.create_table()?;
    let e = env.clone();
    http.set(
        "post",
        lua.create_async_function(move |lua, (url, body, opts): (String, Value, Option<Table>)| {
            let (e, grant) = (e.clone(), granted(&lua, "http.post", Need::Outside));
            async move {
                grant?;
                if !e.cfg.scripts.allow_http {
                    return Err(err(format!(
                        "baton.http.post is switched off: set scripts.allow_http = true in {}",
                        e.cfg.origin
                    )));
                }
                let headers: BTreeMap<String, String> = opt(&opts, "headers")?.unwrap_or_default();
                let timeout =
                    Duration::from_millis(opt::<u64>(&opts, "timeout")?.unwrap_or(e.cfg.scripts.hook_timeout_ms));
                let (body, json) = match body {
                    Value::String(s) => (s.to_str()?.to_string(), false),
                    Value::Nil => (String::new(), false),
                    other => {
                        let v: serde_json::Value = lua.from_value(other)?;
                        (v.to_string(), true)
                    }
                };
                let out = http_post(&url, body, json, &headers, timeout).await.map_err(err)?;
                to_lua(&lua, &out)
            }
        })?,
    )?;
    baton.set("http", http)?;

    lua.globals().set("baton", baton)?;
    Ok(())
}

/// What a primitive needs from the calling coroutine's grant.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A change to a server.
    Writes,
    /// `baton.shell`, `baton.http.post`.
    Outside,
}

/// The caller's grant if it allows `need`, else an error that says who may call `name`.
fn granted(lua: &Lua, name: &str, need: Need) -> mlua::Result<Arc<Grant>> {
    let grant = vm::grant_of(lua);
    let ok = grant.as_ref().is_some_and(|g| match need {
        Need::Writes => g.writes,
        Need::Outside => g.outside,
    });
    match grant {
        Some(g) if ok => Ok(g),
        None => Err(err(format!("baton.{name} is not available inside a coroutine the script created"))),
        Some(g) if need == Need::Outside => {
            Err(err(format!("baton.{name} is not available to {}: the policy and a file's top level change nothing", g.who)))
        }
        Some(g) => Err(err(format!(
            "baton.{name} is not available to {}: only hooks change servers, with scripts.allow_writes = true, and never in a dry run",
            g.who
        ))),
    }
}

/// The instance as it is before a hook changes it, to know how to undo the change. A change
/// whose undo cannot be known is not made.
async fn state_before(e: &Env, k: &InstanceKey) -> mlua::Result<crate::topology::Instance> {
    crate::mysql::probe(&e.connector, k)
        .await
        .map_err(|x| err(format!("cannot read the state of {k} before changing it: {x}")))
}

/// Records a write primitive's call in the caller's grant (the running phase), then returns its
/// result to the script.
fn recorded(
    grant: &Grant,
    primitive: &str,
    k: &InstanceKey,
    undo: Undo,
    r: Result<OpRecord, SqlError>,
) -> mlua::Result<OpRecord> {
    let op = ScriptOp {
        by: grant.who.clone(),
        primitive: primitive.into(),
        instance: k.clone(),
        statements: r.as_ref().map(|o| o.statements.clone()).unwrap_or_default(),
        ms: r.as_ref().map(|o| o.ms).unwrap_or_default(),
        error: r.as_ref().err().map(|e| e.to_string()),
        undo,
    };
    grant.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    r.map_err(err)
}

fn opt<T: mlua::FromLua>(opts: &Option<Table>, name: &str) -> mlua::Result<Option<T>> {
    match opts {
        Some(t) => t.get::<Option<T>>(name),
        None => Ok(None),
    }
}

/// A Lua value as a bound statement parameter.
fn sql_param(v: Value) -> mlua::Result<mysql_async::Value> {
    Ok(match v {
        Value::Nil => mysql_async::Value::NULL,
        Value::Boolean(b) => mysql_async::Value::Int(b as i64),
        Value::Integer(i) => mysql_async::Value::Int(i),
        Value::Number(n) => mysql_async::Value::Double(n),
        Value::String(s) => mysql_async::Value::Bytes(s.as_bytes().to_vec()),
        other => return Err(err(format!("baton.query: a parameter cannot be a {}", other.type_name()))),
    })
}

#[derive(Debug, Serialize)]
pub struct ShellOutput {
    /// Exit status; None when killed by a signal.
    pub status: Option<i32>,
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sh -c cmd` with extra environment variables, killed after `timeout`.
pub async fn run_shell(cmd: &str, env: &BTreeMap<String, String>, timeout: Duration) -> Result<ShellOutput, String> {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).envs(env).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, c.output()).await {
        Err(_) => return Err(format!("shell command timed out after {} ms (killed): {cmd}", timeout.as_millis())),
        Ok(Err(e)) => return Err(format!("cannot run sh: {e}")),
        Ok(Ok(o)) => o,
    };
    Ok(ShellOutput {
        status: out.status.code(),
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[derive(Debug, Serialize)]
pub struct HttpOutput {
    pub status: u16,
    pub ok: bool,
    pub body: String,
}

async fn http_post(
    url: &str,
    body: String,
    json: bool,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<HttpOutput, String> {
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| format!("http client: {e}"))?;
    let mut req = client.post(url).body(body);
    if json {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    Ok(HttpOutput { status: status.as_u16(), ok: status.is_success(), body })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mlua::{Lua, Value};

    use super::*;
    use crate::store::SqliteStore;

    /// `scripts/baton.d.lua` (what editors show script authors) declares exactly what `install`
    /// puts in the `baton` table: every function as `function baton.NAME(`, every other field as a
    /// `---@field` of `baton`, every function of a sub-table as a `---@field` of its class.
    #[test]
    fn baton_d_lua_is_in_step_with_the_api() {
        let decl = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/baton.d.lua")).unwrap();
        // The fields each `---@class NAME` declares.
        let mut classes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut class = String::new();
        let mut declared_functions = BTreeSet::new();
        for line in decl.lines() {
            if let Some(rest) = line.strip_prefix("---@class ") {
                class = rest.split([':', ' ']).next().unwrap().to_string();
                classes.entry(class.clone()).or_default();
            } else if let Some(rest) = line.strip_prefix("---@field ") {
                classes.entry(class.clone()).or_default().insert(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("function baton.") {
                declared_functions.insert(rest.split('(').next().unwrap().to_string());
            }
        }
        let lua = Lua::new();
        let store: Arc<dyn crate::store::Store> = Arc::new(SqliteStore::in_memory().unwrap());
        install(&lua, Env::new(&crate::config::Config::default(), store)).unwrap();
        let baton: Table = lua.globals().get("baton").unwrap();
        let mut installed_functions = BTreeSet::new();
        let mut missing = Vec::new();
        for pair in baton.pairs::<String, Value>() {
            let (name, v) = pair.unwrap();
            match v {
                Value::Function(_) => {
                    installed_functions.insert(name);
                }
                Value::Table(t) if name != "settings" => {
                    let fields = classes.get(&format!("baton.{name}")).cloned().unwrap_or_default();
                    for sub in t.pairs::<String, Value>() {
                        let (sub, _) = sub.unwrap();
                        if !fields.contains(&sub) {
                            missing.push(format!("---@field {sub} in ---@class baton.{name}"));
                        }
                    }
                    if !classes["baton"].contains(&name) {
                        missing.push(format!("---@field {name} in ---@class baton"));
                    }
                }
                _ if !classes["baton"].contains(&name) => missing.push(format!("---@field {name} in ---@class baton")),
                _ => {}
            }
        }
        for f in installed_functions.difference(&declared_functions) {
            missing.push(format!("function baton.{f}("));
        }
        assert!(missing.is_empty(), "scripts/baton.d.lua lacks: {missing:?}");
        let stale: Vec<&String> = declared_functions.difference(&installed_functions).collect();
        assert!(stale.is_empty(), "scripts/baton.d.lua declares functions the API does not have: {stale:?}");
    }
}
