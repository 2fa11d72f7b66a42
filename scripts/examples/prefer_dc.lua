-- Example policy: promote within a named data centre when possible, and never promote a
-- replica lagging more than N seconds (or whose lag is unknown).
--
--   [scripts]
--   policy = "examples/prefer_dc.lua"
--   [scripts.settings.policy]
--   prefer_dc = "east"
--   max_lag_s = 5
--   # Where each instance lives: a map, and/or a Lua pattern whose capture is the DC name.
--   data_centers = { "db1.example.com:3306" = "east", "db2.example.com:3306" = "west" }
--   dc_pattern = "^db%d+%.(%a+)%."
local rank = require "lib.rank"

local settings = baton.settings.policy or {}
local prefer = settings.prefer_dc
local max_lag = settings.max_lag_s or 10
local map = settings.data_centers or {}

local function dc_of(key)
  if map[key] then return map[key] end
  if settings.dc_pattern then
    local host = rank.split_key(key)
    return host:match(settings.dc_pattern)
  end
  return nil
end

local policy = {}

function policy.choose(cluster, candidates)
  local fresh, too_far = {}, {}
  for _, c in ipairs(candidates) do
    if c.lag_s ~= nil and c.lag_s <= max_lag then
      fresh[#fresh + 1] = c
    else
      too_far[#too_far + 1] = string.format("%s (lag %s)", c.key, c.lag_s and (c.lag_s .. "s") or "unknown")
    end
  end
  if #fresh == 0 then
    return nil, string.format("no candidate within %ds of lag: %s", max_lag, table.concat(too_far, ", "))
  end
  local local_dc = {}
  for _, c in ipairs(fresh) do
    if prefer and dc_of(c.key) == prefer then local_dc[#local_dc + 1] = c end
  end
  local pool, where = fresh, "no candidate in " .. tostring(prefer)
  if #local_dc > 0 then pool, where = local_dc, "in " .. prefer end
  local top = rank.top(pool, rank.RUNNERS_UP_SHOWN + 1)
  local reason = string.format("%s (%s)", rank.explain(top, #pool, cluster), where)
  if #too_far > 0 then reason = reason .. "; lagging more than " .. max_lag .. "s: " .. table.concat(too_far, ", ") end
  return top[1].key, reason
end

return policy
