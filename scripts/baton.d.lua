---@meta
-- LuaLS annotations of what Baton gives its scripts (the `baton` module, the policy and hook
-- contracts). Editors read this file; Baton never loads it. Keep it in step with src/lua/api.rs.

---@class baton.InstanceKey: string  "host:port"

---@class baton.Replication
---@field source string               "host:port" of the source
---@field io_thread "yes"|"connecting"|"no"
---@field sql_thread "yes"|"no"
---@field seconds_behind integer?
---@field read_coordinates { file: string, pos: integer }?
---@field exec_coordinates { file: string, pos: integer }?
---@field gtid_mode string
---@field last_io_error { errno: integer, message: string }?
---@field last_sql_error { errno: integer, message: string }?
---@field sql_delay integer
---@field ssl boolean

---@class baton.Instance                 the fields of `baton topology --json`
---@field key string                     "host:port"
---@field flavor "mariadb"|"mysql"
---@field version string
---@field version_comment string
---@field server_id integer
---@field server_uuid string?            MySQL only
---@field read_only boolean
---@field super_read_only boolean?       MySQL only
---@field log_bin boolean
---@field log_slave_updates boolean
---@field binlog_format string
---@field gtid table                     { flavor = "mariadb", current_pos, binlog_pos, slave_pos } or { flavor = "mysql", mode, executed }
---@field binlog { file: string, pos: integer }?
---@field replication baton.Replication?
---@field reported_replicas string[]
---@field probe_ms number
---@field semi_sync baton.SemiSync?      nil when the server has no semi-sync

---@class baton.SemiSync
---@field master_enabled boolean         commits wait for a replica's acknowledgement
---@field master_status boolean          waiting right now (off: fell back to asynchronous)
---@field master_clients integer         semi-sync replicas connected
---@field master_timeout_ms integer
---@field wait_point string              "AFTER_SYNC" or "AFTER_COMMIT"
---@field wait_no_replica boolean
---@field wait_for_replica_count integer  acknowledgements a commit needs (MariaDB: 1)
---@field replica_enabled boolean
---@field replica_status boolean         acknowledging right now

---@class baton.Candidate: baton.Instance
---@field promotion_rule "prefer"|"neutral"|"prefer_not"
---@field lag_s integer?                 Seconds_Behind_Master, nil when unknown
---@field executed_progress number      bigger is more advanced
---@field exec_file_index integer        sequence number of the master's binlog file executed up to (mysql-bin.000042: 42)
---@field exec_pos integer               execution position in that file
---@field newer_than_siblings boolean    a newer version than some sibling

---@class baton.Member
---@field key string
---@field depth integer?
---@field source string?
---@field instance baton.Instance?       nil when unreachable
---@field error string?                  why it is unreachable

---@class baton.Cluster
---@field name string
---@field alias string?
---@field master string?
---@field members baton.Member[]
---@field problems { instance: string, kind: string, message: string }[]
---@field excluded { key: string, reason: string }[]?   (policy only) replicas ruled out, and why

---@class baton.HookContext
---@field takeover_id string
---@field command "graceful-master-takeover"|"graceful-master-takeover-auto"
---@field phase "pre_takeover"|"pre_fence"|"post_promote"|"post_takeover"|"on_failure"
---@field cluster string
---@field alias string?
---@field old_master string?
---@field successor string?
---@field replicas string[]
---@field lost_replicas string[]
---@field phase_timings { phase: string, ms: number }[]
---@field dry_run boolean
---@field status string                 "running", or the final status in on_failure
---@field error string?                 on_failure: the first error
---@field rolled_back string[]          on_failure: what the rollback did
---@field scripts_version string?
---@field semi_sync baton.SemiSync?     the old master's, when the takeover started

---@class baton.Op                      what a primitive did
---@field instance string
---@field statements string[]           as run (passwords masked)
---@field ms number

---@class baton.log
---@field info fun(msg: string)
---@field warn fun(msg: string)
---@field error fun(msg: string)

---@class baton.http
---@field post fun(url: string, body: string|table|nil, opts: { headers: table<string,string>?, timeout: integer? }?): { status: integer, ok: boolean, body: string }

---@class baton
---@field settings table                [scripts.settings] of the config
---@field host string                   this machine's host name
---@field log baton.log
---@field http baton.http               needs scripts.allow_http
baton = {}

---Discovers a cluster by alias, cluster name or "host:port" of any member.
---@param hint string
---@return baton.Cluster
function baton.cluster(hint) end

---Probes one instance.
---@param key string "host:port"
---@return baton.Instance
function baton.instance(key) end

---A read-only query: one SELECT (or WITH ... SELECT) or SHOW, parsed before it is sent: no INTO,
---no file, lock or wait functions, no locking reads, no comments, no backslashes (bind values as
---params). Runs as scripts.query_user where configured. Rows as tables of column (lower case) ->
---text or nil.
---@param key string
---@param sql string
---@param params any[]?
---@return table<string, string?>[]
function baton.query(key, sql, params) end

---The write primitives below (read_only, stop_replication, start_replication, repoint,
---kill_connections) are for hooks only, with scripts.allow_writes = true, never in a dry run or a
---file's top level; the policy never has them. Each call is recorded in its phase with its undo.
---read_only on or off (super_read_only too on MySQL).
---@param key string
---@param on boolean
---@return baton.Op
function baton.read_only(key, on) end

---@param key string
---@return baton.Op
function baton.stop_replication(key) end

---@param key string
---@return baton.Op
function baton.start_replication(key) end

---Points `key` at `source` with GTID and the configured replication account.
---@param key string
---@param source string
---@param opts { start: boolean?, position: "slave_pos"|"current_pos"|nil }?
---@return baton.Op
function baton.repoint(key, source, opts) end

---Waits, in the server, until `key` has executed `gtid`.
---@param key string
---@param gtid string
---@param timeout_ms integer?
---@return baton.Op
function baton.wait_for_position(key, gtid, timeout_ms) end

---Kills the client connections on `key` (not Baton's own, not replication).
---@param key string
---@return baton.Op
function baton.kill_connections(key) end

---Runs `sh -c cmd` (needs scripts.allow_shell).
---@param cmd string
---@param opts { env: table<string,string>?, timeout: integer? }?
---@return { status: integer?, ok: boolean, stdout: string, stderr: string }
function baton.shell(cmd, opts) end

---@param ms integer
function baton.sleep(ms) end

---Unix time in seconds.
---@return number
function baton.now() end

---@class baton.Policy
---@field choose fun(cluster: baton.Cluster, candidates: baton.Candidate[]): string?, string

---@alias baton.Hook fun(ctx: baton.HookContext): boolean?, string?

---@class baton.HookFile
---@field pre_takeover baton.Hook?   may veto (return false, "reason" or raise)
---@field pre_fence baton.Hook?      may veto
---@field post_promote baton.Hook?
---@field post_takeover baton.Hook?
---@field on_failure baton.Hook?
