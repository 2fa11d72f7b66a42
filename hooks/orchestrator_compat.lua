-- Runs shell commands configured the orchestrator way, so that existing
-- PreGracefulTakeoverProcesses / PostGracefulTakeoverProcesses keep working unchanged:
--
--   [scripts]
--   allow_shell = true
--   [scripts.settings.orchestrator]
--   PreGracefulTakeoverProcesses = ["/usr/local/bin/check-ok.sh {failureCluster} {failedHost}"]
--   PostGracefulTakeoverProcesses = ["echo '{failedHost} -> {successorHost}' >> /tmp/takeover.log"]
--
-- As in orchestrator: {placeholders} are replaced in the command text, ORC_* variables are set in
-- its environment, a pre command that fails stops the takeover, and a command ending in "&" runs
-- in the background with its failure ignored. A post command that fails is recorded in the audit
-- (orchestrator only logged it). Inert when no commands are configured.
local settings = baton.settings.orchestrator or {}

local function split(key)
  if not key then return "", "" end
  local host, port = key:match("^(.*):(%d+)$")
  return host or key, port or ""
end

-- The orchestrator names of what a graceful takeover knows.
local function values(ctx)
  local failed_host, failed_port = split(ctx.old_master)
  local successor_host, successor_port = split(ctx.successor)
  local v = {
    failureType = "DeadMaster", -- what orchestrator reports for a graceful takeover
    instanceType = "master",
    isMaster = "true",
    isCoMaster = "false",
    failureDescription = "graceful master takeover",
    failedHost = failed_host,
    failedPort = failed_port,
    failureCluster = ctx.cluster or "",
    failureClusterAlias = ctx.alias or "",
    failureClusterDomain = settings.ClusterDomain or "",
    countReplicas = tostring(#ctx.replicas),
    isDowntimed = "false",
    autoMasterRecovery = "false",
    autoIntermediateMasterRecovery = "false",
    orchestratorHost = baton.host,
    lostReplicas = table.concat(ctx.lost_replicas, ","),
    countLostReplicas = tostring(#ctx.lost_replicas),
    replicaHosts = table.concat(ctx.replicas, ","),
    isSuccessful = tostring(ctx.phase == "post_takeover"),
    command = ctx.command,
    recoveryUID = ctx.takeover_id,
    successorHost = successor_host,
    successorPort = successor_port,
    successorAlias = ctx.successor or "",
    successorBinlogCoordinates = "",
  }
  -- Old spellings orchestrator still accepts.
  v.countSlaves, v.slaveHosts, v.lostSlaves = v.countReplicas, v.replicaHosts, v.lostReplicas
  return v
end

local ENV = {
  ORC_FAILURE_TYPE = "failureType", ORC_INSTANCE_TYPE = "instanceType", ORC_IS_MASTER = "isMaster",
  ORC_IS_CO_MASTER = "isCoMaster", ORC_FAILURE_DESCRIPTION = "failureDescription",
  ORC_FAILED_HOST = "failedHost", ORC_FAILED_PORT = "failedPort", ORC_FAILURE_CLUSTER = "failureCluster",
  ORC_FAILURE_CLUSTER_ALIAS = "failureClusterAlias", ORC_FAILURE_CLUSTER_DOMAIN = "failureClusterDomain",
  ORC_COUNT_REPLICAS = "countReplicas", ORC_IS_DOWNTIMED = "isDowntimed",
  ORC_AUTO_MASTER_RECOVERY = "autoMasterRecovery",
  ORC_AUTO_INTERMEDIATE_MASTER_RECOVERY = "autoIntermediateMasterRecovery",
  ORC_ORCHESTRATOR_HOST = "orchestratorHost", ORC_IS_SUCCESSFUL = "isSuccessful",
  ORC_LOST_REPLICAS = "lostReplicas", ORC_REPLICA_HOSTS = "replicaHosts", ORC_COMMAND = "command",
  ORC_RECOVERY_UID = "recoveryUID", ORC_SUCCESSOR_HOST = "successorHost",
  ORC_SUCCESSOR_PORT = "successorPort", ORC_SUCCESSOR_ALIAS = "successorAlias",
  ORC_SUCCESSOR_BINLOG_COORDINATES = "successorBinlogCoordinates",
}

local M = {}

--- The command with its {placeholders} replaced.
function M.expand(command, v)
  return (command:gsub("{(%a+)}", function(name)
    if v[name] ~= nil then return v[name] end
  end))
end

function M.environment(v)
  local env = {}
  for var, name in pairs(ENV) do env[var] = v[name] end
  return env
end

-- Runs the commands of one list in order; the first failure stops the list (a veto in
-- pre_takeover, a recorded failure in post_takeover).
local function run_all(list_name, ctx)
  local list = settings[list_name] or {}
  local v = values(ctx)
  local env = M.environment(v)
  for i, command in ipairs(list) do
    local cmd = M.expand(command, v)
    local background = cmd:match("&%s*$") ~= nil
    if background then
      cmd = "(" .. cmd:gsub("&%s*$", "") .. ") >/dev/null 2>&1 &"
    end
    baton.log.info(string.format("%s #%d: %s", list_name, i, cmd))
    local out = baton.shell(cmd, { env = env })
    if not out.ok and not background then
      local why = string.format("%s #%d failed (exit %s): %s %s", list_name, i, tostring(out.status), cmd, out.stderr)
      baton.log.error(why)
      return false, why
    end
  end
  return true
end

function M.pre_takeover(ctx)
  return run_all("PreGracefulTakeoverProcesses", ctx)
end

function M.post_takeover(ctx)
  return run_all("PostGracefulTakeoverProcesses", ctx)
end

return { pre_takeover = M.pre_takeover, post_takeover = M.post_takeover }
