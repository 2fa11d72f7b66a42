-- Posts a JSON notification to a webhook (chat, incident tool, deploy tracker).
--
--   [scripts]
--   allow_http = true
--   [scripts.settings.webhook]
--   url = "https://hooks.example.com/baton"
--   headers = { Authorization = "Bearer ..." }
--   # Phases to notify (default: post_promote and on_failure).
--   phases = ["post_promote", "on_failure"]
--
-- Inert when no url is configured. A failed POST is recorded (a veto only in pre phases).
local settings = baton.settings.webhook or {}

local function wanted(phase)
  for _, p in ipairs(settings.phases or { "post_promote", "on_failure" }) do
    if p == phase then return true end
  end
  return false
end

local function notify(ctx)
  if not settings.url or not wanted(ctx.phase) then return true end
  local text
  if ctx.phase == "on_failure" then
    text = string.format("Takeover of %s FAILED (%s): %s", ctx.alias or ctx.cluster, ctx.status, ctx.error or "?")
  else
    text = string.format("%s: %s -> %s (%s)", ctx.alias or ctx.cluster, ctx.old_master or "?", ctx.successor or "?", ctx.phase)
  end
  local out = baton.http.post(settings.url, { text = text, event = ctx.phase, takeover = ctx }, {
    headers = settings.headers,
    timeout = settings.timeout_ms,
  })
  if not out.ok then
    return false, string.format("webhook %s answered %d: %s", settings.url, out.status, out.body)
  end
  return true
end

return {
  pre_takeover = notify,
  post_promote = notify,
  post_takeover = notify,
  on_failure = notify,
}
