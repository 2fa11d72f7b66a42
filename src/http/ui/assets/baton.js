// Baton's console: progressive enhancement only (every page works without it).
// The cluster list refreshes its rows every 5 s, and the filter box filters as one types.
"use strict";
// What went wrong on this page, for the browser tests (and anyone with the inspector open).
const problems = [];
window.addEventListener("error", (e) => problems.push(String(e.message)));
document.addEventListener("securitypolicyviolation", (e) => problems.push("CSP: " + e.violatedDirective));
window.batonProblems = problems;
document.documentElement.dataset.js = "ok";
(function () {
  const age = document.getElementById("age");
  const rows = document.getElementById("clusters");
  if (!age || !rows) return;
  const input = document.querySelector("form.filter input[name=q]");
  async function refresh() {
    const q = input ? input.value : "";
    try {
      const r = await fetch(age.dataset.refresh + "?q=" + encodeURIComponent(q), { credentials: "same-origin" });
      if (!r.ok) return;
      rows.innerHTML = await r.text();
      const n = r.headers.get("x-baton-clusters");
      age.textContent = n + (n === "1" ? " cluster" : " clusters") + " · data at most " + r.headers.get("x-baton-data-age-s") + " s old";
    } catch (e) { /* the next tick tries again */ }
  }
  if (input) input.addEventListener("input", refresh);
  setInterval(refresh, 5000);
})();

// A running takeover: its phases as they end, from the event stream; the full page at the end.
(function () {
  const list = document.getElementById("live");
  if (!list) return;
  const events = new EventSource(list.dataset.events);
  events.addEventListener("phase", (e) => {
    const ev = JSON.parse(e.data);
    if (ev.event !== "finished") return;
    const li = document.createElement("li");
    li.className = ev.record.outcome;
    li.textContent = ev.record.name + " · " + ev.record.duration_ms.toFixed(1) + " ms · " + ev.record.outcome;
    list.appendChild(li);
  });
  events.addEventListener("done", () => { events.close(); location.reload(); });
})();

// Forms that change something ask first.
document.querySelectorAll("form[data-confirm]").forEach((f) => {
  f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
});
