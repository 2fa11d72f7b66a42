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

use super::Env;
use crate::discovery;
use crate::mysql::{ops, SourcePosition, SourceSpec};
use crate::topology::{Flavor, InstanceKey};

/// Serializes Rust values for Lua: `None` becomes nil (not a null sentinel).
pub fn to_lua<T: Serialize + ?Sized>(lua: &Lua, v: &T) -> mlua::Result<Value> {
    lua.to_value_with(v, mlua::serde::SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false))
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
    log.set("info", lua.create_function(|lua, msg: String| {
        tracing::info!(script = %caller(lua), "{msg}");
        Ok(())
    })?)?;
    log.set("warn", lua.create_function(|lua, msg: String| {
        tracing::warn!(script = %caller(lua), "{msg}");
        Ok(())
    })?)?;
    log.set("error", lua.create_function(|lua, msg: String| {
        tracing::error!(script = %caller(lua), "{msg}");
        Ok(())
    })?)?;
    baton.set("log", log)?;
    lua.globals().set("print", lua.create_function(|lua, args: mlua::Variadic<Value>| {
        let parts: Vec<String> = args.iter().map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}"))).collect();
        tracing::info!(script = %caller(lua), "{}", parts.join("\t"));
        Ok(())
    })?)?;
    baton.set("now", lua.create_function(|_, ()| Ok(crate::store::now_unix_ms() as f64 / 1000.0))?)?;
    baton.set("sleep", lua.create_async_function(|_, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    })?)?;

    // ---- topology reads ----
    let e = env.clone();
    baton.set("cluster", lua.create_async_function(move |lua, hint: String| {
        let e = e.clone();
        async move {
            let c = discovery::discover_hint(&e.connector, &e.cfg, e.store.as_ref(), &hint).await.map_err(err)?;
            to_lua(&lua, &c)
        }
    })?)?;
    let e = env.clone();
    baton.set("instance", lua.create_async_function(move |lua, k: String| {
        let e = e.clone();
        async move {
            let i = crate::mysql::probe(&e.connector, &key(&k)?).await.map_err(err)?;
            to_lua(&lua, &i)
        }
    })?)?;
    let e = env.clone();
    baton.set("query", lua.create_async_function(move |lua, (k, sql, params): (String, String, Option<Vec<Value>>)| {
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
    })?)?;

    // ---- primitives ----
    let e = env.clone();
    baton.set("read_only", lua.create_async_function(move |lua, (k, on): (String, bool)| {
        let e = e.clone();
        async move {
            let op = ops::set_read_only(&e.connector, &key(&k)?, on, e.cfg.takeover.fence_lock_wait_s).await.map_err(err)?;
            to_lua(&lua, &op)
        }
    })?)?;
    let e = env.clone();
    baton.set("stop_replication", lua.create_async_function(move |lua, k: String| {
        let e = e.clone();
        async move { to_lua(&lua, &ops::stop_replication(&e.connector, &key(&k)?).await.map_err(err)?) }
    })?)?;
    let e = env.clone();
    baton.set("start_replication", lua.create_async_function(move |lua, k: String| {
        let e = e.clone();
        async move { to_lua(&lua, &ops::start_replication(&e.connector, &key(&k)?).await.map_err(err)?) }
    })?)?;
    let e = env.clone();
    baton.set("repoint", lua.create_async_function(move |lua, (k, source, opts): (String, String, Option<Table>)| {
        let e = e.clone();
        async move {
            let (k, source) = (key(&k)?, key(&source)?);
            let start = opts.as_ref().map(|o| o.get::<Option<bool>>("start")).transpose()?.flatten().unwrap_or(true);
            let flavor = e.connector.dialect(&k).await.map_err(err)?.flavor();
            let position = match (flavor, opts.as_ref().map(|o| o.get::<Option<String>>("position")).transpose()?.flatten().as_deref()) {
                (Flavor::MySql, _) => SourcePosition::AutoPosition,
                (_, None | Some("slave_pos")) => SourcePosition::GtidSlavePos,
                (_, Some("current_pos")) => SourcePosition::GtidCurrentPos,
                (_, Some(other)) => return Err(err(format!("repoint: position '{other}' is not slave_pos or current_pos"))),
            };
            let r = &e.cfg.replication;
            let spec = SourceSpec {
                host: source.host.clone(),
                port: source.port,
                user: r.user.clone(),
                password: r.password.expose().to_string(),
                position,
                tls: r.tls,
            };
            to_lua(&lua, &ops::repoint(&e.connector, &k, &spec, start).await.map_err(err)?)
        }
    })?)?;
    let e = env.clone();
    baton.set("wait_for_position", lua.create_async_function(move |lua, (k, gtid, timeout_ms): (String, String, Option<u64>)| {
        let e = e.clone();
        async move {
            let k = key(&k)?;
            let d = e.connector.dialect(&k).await.map_err(err)?;
            let limit = Duration::from_millis(timeout_ms.unwrap_or(e.cfg.takeover.catchup_timeout_ms));
            to_lua(&lua, &ops::wait_for_gtid(&e.connector, d.as_ref(), &k, &gtid, limit).await.map_err(err)?)
        }
    })?)?;
    let e = env.clone();
    baton.set("kill_connections", lua.create_async_function(move |lua, k: String| {
        let e = e.clone();
        async move {
            let op = ops::kill_client_connections(&e.connector, &key(&k)?, &e.cfg.topology.user).await.map_err(err)?;
            to_lua(&lua, &op)
        }
    })?)?;

    // ---- capabilities outside MySQL ----
    let e = env.clone();
    baton.set("shell", lua.create_async_function(move |lua, (cmd, opts): (String, Option<Table>)| {
        let e = e.clone();
        async move {
            if !e.cfg.scripts.allow_shell {
                return Err(err(format!("baton.shell is switched off: set scripts.allow_shell = true in {}", e.cfg.origin)));
            }
            let env_vars: BTreeMap<String, String> = opt(&opts, "env")?.unwrap_or_default();
            let timeout = Duration::from_millis(opt::<u64>(&opts, "timeout")?.unwrap_or(e.cfg.scripts.hook_timeout_ms));
            let out = run_shell(&cmd, &env_vars, timeout).await.map_err(err)?;
            to_lua(&lua, &out)
        }
    })?)?;
    let http = lua.create_table()?;
    let e = env.clone();
    http.set("post", lua.create_async_function(move |lua, (url, body, opts): (String, Value, Option<Table>)| {
        let e = e.clone();
        async move {
            if !e.cfg.scripts.allow_http {
                return Err(err(format!("baton.http.post is switched off: set scripts.allow_http = true in {}", e.cfg.origin)));
            }
            let headers: BTreeMap<String, String> = opt(&opts, "headers")?.unwrap_or_default();
            let timeout = Duration::from_millis(opt::<u64>(&opts, "timeout")?.unwrap_or(e.cfg.scripts.hook_timeout_ms));
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
    })?)?;
    baton.set("http", http)?;

    lua.globals().set("baton", baton)?;
    Ok(())
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
