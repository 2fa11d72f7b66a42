//! The policy's arguments as Lua tables, built lazily so that a choice among a thousand
//! candidates stays under a millisecond: each candidate table starts with the fields policies
//! rank by (key, promotion_rule, lag_s, executed_progress, exec_file_index, exec_pos,
//! newer_than_siblings, version), copied in bulk as columns; the first access to any other field fills the table with
//! every probed field of that instance. The cluster table likewise starts with name, alias,
//! master and excluded, and gets members and problems on first access.
//! To a script this is invisible: `pairs()` fills the table first too.

use std::sync::Arc;

use mlua::{Function, Lua, Table, Value};

use super::api::to_lua;
use crate::engine::PolicyInput;
use crate::store::PromotionRule;

/// Compiled once per VM. Calls `choose(cluster, candidates)` after building both.
const CALL_POLICY: &str = r#"
-- Lua's own setmetatable: these metatables have no __gc, and the guarded one costs a call each.
local setmetatable, rawget, next = ...
return function(choose, cols, n, fill_candidate, cluster, fill_cluster)
  -- First access to a field a table lacks, or the first pairs() over it: fill it once (by its
  -- key), then drop the metatable.
  local function fill_once(fill)
    return {
      __index = function(t, k)
        setmetatable(t, nil)
        fill(t)
        return rawget(t, k)
      end,
      __pairs = function(t)
        setmetatable(t, nil)
        fill(t)
        return next, t, nil
      end,
    }
  end
  local mt = fill_once(fill_candidate)
  local key, rule, lag, progress, pos, newer, version, file = cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8]
  local candidates = {}
  for i = 1, n do
    candidates[i] = setmetatable({ key = key[i], promotion_rule = rule[i], lag_s = lag[i], executed_progress = progress[i],
      exec_file_index = file[i], exec_pos = pos[i], newer_than_siblings = newer[i], version = version[i] }, mt)
  end
  return choose(setmetatable(cluster, fill_once(fill_cluster)), candidates)
end
"#;

pub fn compile(lua: &Lua) -> mlua::Result<Function> {
    let raw: Function = lua.named_registry_value(super::vm::RAW_SETMETATABLE)?;
    let g = lua.globals();
    lua.load(CALL_POLICY).set_name("=baton:policy-call").call((
        raw,
        g.get::<Function>("rawget")?,
        g.get::<Function>("next")?,
    ))
}

fn rule_name(r: PromotionRule) -> &'static str {
    match r {
        PromotionRule::Prefer => "prefer",
        PromotionRule::Neutral => "neutral",
        PromotionRule::PreferNot => "prefer_not",
        PromotionRule::MustNot => "must_not",
    }
}

/// Copies the fields of `full` that `t` lacks into `t`.
fn fill_from(t: &Table, full: Value) -> mlua::Result<()> {
    if let Value::Table(full) = full {
        for pair in full.pairs::<Value, Value>() {
            let (k, v) = pair?;
            if t.raw_get::<Value>(k.clone())?.is_nil() {
                t.raw_set(k, v)?;
            }
        }
    }
    Ok(())
}

/// The arguments of `CALL_POLICY` after `choose`.
pub fn policy_args(lua: &Lua, input: Arc<PolicyInput>) -> mlua::Result<(Table, usize, Function, Table, Function)> {
    // A policy that changed `key` before reading another field gets an error naming the key.
    let c = &input.candidates;
    let cols = lua.create_sequence_from([
        lua.create_sequence_from(c.iter().map(|c| c.instance.key.to_string()))?,
        lua.create_sequence_from(c.iter().map(|c| rule_name(c.promotion_rule)))?,
        lua.create_sequence_from(c.iter().map(|c| c.lag_s))?,
        lua.create_sequence_from(c.iter().map(|c| c.executed_progress))?,
        lua.create_sequence_from(c.iter().map(|c| c.exec_pos))?,
        lua.create_sequence_from(c.iter().map(|c| c.newer_than_siblings))?,
        lua.create_sequence_from(c.iter().map(|c| c.instance.version.as_str()))?,
        lua.create_sequence_from(c.iter().map(|c| c.exec_file_index))?,
    ])?;
    // Found by key (policies may reorder or copy the tables): an index built on first use.
    let inp = input.clone();
    let index: std::sync::OnceLock<std::collections::HashMap<String, usize>> = std::sync::OnceLock::new();
    let fill_candidate = lua.create_function(move |lua, t: Table| {
        let key: String = t.raw_get("key")?;
        let index = index
            .get_or_init(|| inp.candidates.iter().enumerate().map(|(i, c)| (c.instance.key.to_string(), i)).collect());
        let cand = index
            .get(&key)
            .map(|i| &inp.candidates[*i])
            .ok_or_else(|| mlua::Error::RuntimeError(format!("no candidate {key}")))?;
        fill_from(&t, to_lua(lua, cand)?)
    })?;
    let cluster = lua.create_table()?;
    cluster.raw_set("name", input.cluster.name.as_str())?;
    cluster.raw_set("alias", input.cluster.alias.as_deref())?;
    cluster.raw_set("master", input.master.to_string())?;
    cluster.raw_set("excluded", to_lua(lua, &input.excluded)?)?;
    let inp = input.clone();
    let fill_cluster = lua.create_function(move |lua, t: Table| fill_from(&t, to_lua(lua, &inp.cluster)?))?;
    Ok((cols, c.len(), fill_candidate, cluster, fill_cluster))
}
