-- The built-in candidate ordering, as a module policies can reuse:
--   promotion rule (prefer < neutral < prefer_not), then the most advanced executed position
--   (GTID progress, then the binlog file's sequence number and the position in it),
--   then the least lag, then a version not newer than the siblings, then host, then port.
-- It is the same ordering Baton uses when no policy is configured.
local M = {}

local RULE = { prefer = 0, neutral = 1, prefer_not = 2, must_not = 3 }

--- Splits "host:port" into host and port (a number).
function M.split_key(key)
  local host, port = key:match("^(.*):(%d+)$")
  return host or key, tonumber(port) or 0
end

local function lag(c)
  return c.lag_s or math.huge
end

--- True when candidate a ranks ahead of candidate b.
function M.better(a, b)
  local ra, rb = RULE[a.promotion_rule] or 1, RULE[b.promotion_rule] or 1
  if ra ~= rb then return ra < rb end
  if a.executed_progress ~= b.executed_progress then return a.executed_progress > b.executed_progress end
  if a.exec_file_index ~= b.exec_file_index then return a.exec_file_index > b.exec_file_index end
  if a.exec_pos ~= b.exec_pos then return a.exec_pos > b.exec_pos end
  if lag(a) ~= lag(b) then return lag(a) < lag(b) end
  if a.newer_than_siblings ~= b.newer_than_siblings then return not a.newer_than_siblings end
  local ha, pa = M.split_key(a.key)
  local hb, pb = M.split_key(b.key)
  if ha ~= hb then return ha < hb end
  return pa < pb
end

--- Runners-up named in a reason; the rest are counted (as in the built-in policy).
M.RUNNERS_UP_SHOWN = 5

--- The best `k` candidates, best first, in one pass (a policy over a thousand replicas stays
--- well under a millisecond; a full sort would not).
function M.top(candidates, k)
  local top = {}
  for _, c in ipairs(candidates) do
    if #top < k or M.better(c, top[#top]) then
      local pos = #top + 1
      while pos > 1 and M.better(c, top[pos - 1]) do pos = pos - 1 end
      table.insert(top, pos, c)
      if #top > k then top[#top] = nil end
    end
  end
  return top
end

--- "a (why); b (why)" for the excluded replicas of a cluster table.
function M.excluded_text(cluster)
  local parts = {}
  for _, e in ipairs(cluster.excluded or {}) do
    parts[#parts + 1] = string.format("%s (%s)", e.key, e.reason)
  end
  return table.concat(parts, "; ")
end

--- The reason for choosing top[1] out of `count` candidates (`top` from M.top).
function M.explain(top, count, cluster)
  local best = top[1]
  local lagtext = best.lag_s and tostring(best.lag_s) or "unknown "
  local reason = string.format("%s chosen: rule %s, executed %.0f, lag %ss, version %s",
    best.key, best.promotion_rule, best.executed_progress, lagtext, best.version)
  if count > 1 then
    local others = {}
    for i = 2, math.min(#top, M.RUNNERS_UP_SHOWN + 1) do others[#others + 1] = top[i].key end
    reason = reason .. "; ranked ahead of " .. table.concat(others, ", ")
    if count - 1 > M.RUNNERS_UP_SHOWN then
      reason = reason .. string.format(" and %d more", count - 1 - M.RUNNERS_UP_SHOWN)
    end
  end
  local excluded = M.excluded_text(cluster)
  if excluded ~= "" then reason = reason .. "; excluded: " .. excluded end
  return reason
end

return M
