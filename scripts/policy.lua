-- Baton's default candidate policy (scripts.policy = "policy.lua").
--
-- Baton calls choose(cluster, candidates) when a takeover must pick the replica to promote
-- (graceful-master-takeover-auto with several replicas). `candidates` are the master's direct
-- replicas that passed the safety rules (not must_not, not downtimed, not filtered, replicating,
-- no errant GTIDs, able to serve replicas); `cluster.excluded` lists the others and why.
-- Return the chosen "host:port" and a reason, or nil and the reason to refuse.
--
-- This policy reproduces the built-in ordering; copy it to write your own.
local rank = require "lib.rank"

local policy = {}

function policy.choose(cluster, candidates)
  if #candidates == 0 then
    return nil, "no eligible replica of " .. tostring(cluster.master) .. ": " .. rank.excluded_text(cluster)
  end
  local top = rank.top(candidates, rank.RUNNERS_UP_SHOWN + 1)
  return top[1].key, rank.explain(top, #candidates, cluster)
end

return policy
