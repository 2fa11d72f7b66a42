-- Moves the application's writer through HAProxy's runtime API (its admin socket).
--
--   [scripts]
--   allow_shell = true
--   [scripts.settings.haproxy]
--   # A command that sends its standard input to the runtime API (a socket at level admin).
--   admin = "socat -t 2 stdio unix-connect:/run/haproxy/admin.sock"
--   backend = "mysql_writer"
--
-- The backend lists the cluster's members as servers (found here by address); only the writer is
-- enabled, the others are in maintenance. With `timeout queue` set, a connection that arrives
-- while no server is ready waits in HAProxy's queue: the application sees the switch as a pause.
--
-- pre_fence: the old master is drained (no new connections; open ones go on until the fence).
--   A failure vetoes the takeover.
-- post_promote: the new master is ready, the old one in maintenance with its sessions shut (the
--   application reconnects, through HAProxy, to the new master).
-- on_failure: a takeover that did not promote undoes the drain (the old master is ready again;
--   the designated replica stays in maintenance). After a promotion with errors the promotion
--   stands and nothing is undone.
-- Inert when no admin command is configured.
local s = baton.settings.haproxy or {}
local backend = s.backend or "mysql_writer"

-- Sends commands (one line, `;`-separated) and returns HAProxy's answer.
local function runtime(cmds)
  local out = baton.shell(s.admin .. " <<'BATON_HAPROXY'\n" .. table.concat(cmds, "; ") .. "\nBATON_HAPROXY")
  if not out.ok then
    return nil, "haproxy runtime API failed (exit " .. tostring(out.status) .. "): " .. out.stderr
  end
  return out.stdout
end

local function words(line)
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  return w
end

-- Server names by "address:port", from `show servers state <backend>`.
local function servers()
  local state, err = runtime({ "show servers state " .. backend })
  if not state then return nil, err end
  local names, col = {}, nil
  for line in state:gmatch("[^\n]+") do
    if line:sub(1, 1) == "#" then
      col = {}
      for i, name in ipairs(words(line:sub(2))) do col[name] = i end
    elseif col and col.srv_name then
      local f = words(line)
      if f[col.srv_addr] and f[col.srv_port] then
        names[f[col.srv_addr] .. ":" .. f[col.srv_port]] = f[col.srv_name]
      end
    end
  end
  if not col then return nil, "haproxy: no backend " .. backend .. ": " .. state end
  return names
end

-- Runs `set`/`shutdown` commands on the servers of `keys`; they answer nothing when they work.
local function apply(keys, commands)
  local names, err = servers()
  if not names then return false, err end
  local cmds = {}
  for i, key in ipairs(keys) do
    local name = names[key]
    if not name then return false, "haproxy: no server " .. key .. " in backend " .. backend end
    cmds[#cmds + 1] = commands[i]:gsub("%%s", backend .. "/" .. name)
  end
  local out, e = runtime(cmds)
  if not out then return false, e end
  if out:match("%S") then return false, "haproxy: " .. out end
  return true
end

local function drain(ctx)
  if not s.admin then return true end
  return apply({ ctx.old_master }, { "set server %s state drain" })
end

local function switch(ctx)
  if not s.admin then return true end
  return apply({ ctx.successor, ctx.old_master, ctx.old_master },
    { "set server %s state ready", "set server %s state maint", "shutdown sessions server %s" })
end

local function undo(ctx)
  if not s.admin or ctx.status == "promoted_with_errors" then return true end
  return apply({ ctx.old_master }, { "set server %s state ready" })
end

return { pre_fence = drain, post_promote = switch, on_failure = undo }
