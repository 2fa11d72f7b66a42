-- Moves ProxySQL's writer to the new master, through ProxySQL's admin interface.
--
--   [scripts]
--   allow_shell = true
--   [scripts.settings.proxysql]
--   # A command that runs SQL read from stdin on the ProxySQL admin interface.
--   admin = "mysql -h127.0.0.1 -P6032 -uradmin -pradmin --batch"
--   writer_hostgroup = 10
--   reader_hostgroup = 20
--
-- pre_fence: the old master goes OFFLINE_SOFT in the writer hostgroup (ProxySQL stops sending it
-- new transactions and lets running ones finish) - a failure here vetoes the takeover.
-- post_promote: the new master becomes the writer, the old one a reader.
-- on_failure: a takeover that did not promote (rolled back, or failed before promotion) undoes
-- the drain: the old master is ONLINE in the writer hostgroup again. After a promotion that had
-- errors, the promotion stands and nothing is undone.
-- Inert when no admin command is configured.
local s = baton.settings.proxysql or {}

local function split(key)
  local host, port = key:match("^(.*):(%d+)$")
  return host, tonumber(port)
end

local function quote(v)
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

local function admin(sql)
  local cmd = s.admin .. " <<'BATON_SQL'\n" .. sql .. "\nBATON_SQL"
  local out = baton.shell(cmd)
  if not out.ok then
    return false, "proxysql admin failed (exit " .. tostring(out.status) .. "): " .. out.stderr
  end
  return true
end

local function drain(ctx)
  if not s.admin then return true end
  local host, port = split(ctx.old_master)
  return admin(string.format(
    "UPDATE mysql_servers SET status='OFFLINE_SOFT' WHERE hostgroup_id=%d AND hostname=%s AND port=%d;\n" ..
    "LOAD MYSQL SERVERS TO RUNTIME;", s.writer_hostgroup or 10, quote(host), port))
end

local function switch(ctx)
  if not s.admin then return true end
  local wh, rh = s.writer_hostgroup or 10, s.reader_hostgroup or 20
  local oh, op = split(ctx.old_master)
  local nh, np = split(ctx.successor)
  return admin(table.concat({
    string.format("DELETE FROM mysql_servers WHERE hostgroup_id=%d;", wh),
    string.format("INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (%d, %s, %d);", wh, quote(nh), np),
    string.format("REPLACE INTO mysql_servers (hostgroup_id, hostname, port) VALUES (%d, %s, %d);", rh, quote(oh), op),
    "LOAD MYSQL SERVERS TO RUNTIME;",
    "SAVE MYSQL SERVERS TO DISK;",
  }, "\n"))
end

local function undo(ctx)
  if not s.admin or ctx.status == "promoted_with_errors" then return true end
  local host, port = split(ctx.old_master)
  return admin(string.format(
    "UPDATE mysql_servers SET status='ONLINE' WHERE hostgroup_id=%d AND hostname=%s AND port=%d;\n" ..
    "LOAD MYSQL SERVERS TO RUNTIME;", s.writer_hostgroup or 10, quote(host), port))
end

return { pre_fence = drain, post_promote = switch, on_failure = undo }
