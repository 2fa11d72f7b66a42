-- Example policy for semi-synchronous clusters: promote a replica that is acknowledging right now
-- (replica side on and running), so that the new master's commits are acknowledged by replicas
-- that were already keeping up; among them, the built-in ordering. Without any acknowledging
-- candidate it refuses (set `fallback = true` to take the best of the others instead).
--
--   [scripts]
--   policy = "examples/prefer_semi_sync.lua"
--   [scripts.settings.policy]
--   fallback = false
local rank = require "lib.rank"

local settings = baton.settings.policy or {}

local function acknowledging(c)
  local s = c.semi_sync
  return s ~= nil and s.replica_enabled and s.replica_status
end

local policy = {}

function policy.choose(cluster, candidates)
  local acking, others = {}, {}
  for _, c in ipairs(candidates) do
    if acknowledging(c) then acking[#acking + 1] = c else others[#others + 1] = c.key end
  end
  local pool, where = acking, "acknowledging semi-sync replicas"
  if #acking == 0 then
    if not settings.fallback then
      return nil, "no candidate acknowledges as a semi-sync replica: " .. table.concat(others, ", ")
    end
    pool, where = candidates, "no acknowledging semi-sync replica: the best of the others"
  end
  local top = rank.top(pool, rank.RUNNERS_UP_SHOWN + 1)
  return top[1].key, string.format("%s (%s)", rank.explain(top, #pool, cluster), where)
end

return policy
