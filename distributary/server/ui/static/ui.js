// distributary web UI: live updates by polling /api/ui, the task-run table's server-side pages, the timeline.
// No framework, no build step. HTML fragments come from the server's templates (escaped there).
"use strict";

const POLL_MS = 1500;
const COLORS = { COMPLETED: "#16a34a", FAILED: "#dc2626", CRASHED: "#ea580c", RUNNING: "#2563eb", PENDING: "#94a3b8",
  SCHEDULED: "#a16207", CANCELLED: "#475569", CANCELLING: "#64748b", PAUSED: "#a855f7" };
// When a cell holds several states, the one drawn is the first of these it holds.
const PRIORITY = ["FAILED", "CRASHED", "CANCELLED", "CANCELLING", "PAUSED", "RUNNING", "PENDING", "SCHEDULED", "COMPLETED"];

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function swap(el, html) { if (el && el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; } }

function every(ms, fn) {
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try { if ((await fn()) === false) { stopped = true; return; } } catch (e) { console.warn(e); }
    setTimeout(tick, ms);
  }
  setTimeout(tick, ms);
  return () => { stopped = true; };
}

function fmtTime(t) { return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 23); }

// -- flow runs list ---------------------------------------------------------------------------------------------
function flowRunsPage() {
  const table = document.getElementById("flow-runs");
  const live = document.getElementById("live");
  const body = table.querySelector("tbody");
  every(2000, async () => {
    if (!live.checked || document.hidden) return;
    const d = await getJSON("/api/ui/flow-runs?" + table.dataset.query);
    swap(body, d.html);
    document.getElementById("fr-total").textContent = d.total;
  });
}

// -- logs (flow run and task run pages) ---------------------------------------------------------------------------
function logsPanel(isLive) {
  const box = document.getElementById("logs");
  if (!box) return null;
  const rows = document.getElementById("log-rows");
  const scroller = document.getElementById("logbox");
  const level = document.getElementById("log-level");
  const follow = document.getElementById("log-follow");
  let last = Number(box.dataset.lastId || 0);
  const base = () => "/api/ui/logs?flow_run_id=" + encodeURIComponent(box.dataset.flowRunId || "") +
    "&task_run_id=" + encodeURIComponent(box.dataset.taskRunId || "") + "&level=" + level.value;
  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 30;
  scroller.scrollTop = scroller.scrollHeight;
  level.addEventListener("change", async () => {
    const d = await getJSON(base());
    rows.innerHTML = d.html;
    last = d.last_id || 0;
    scroller.scrollTop = scroller.scrollHeight;
  });
  async function tail() {
    if (!follow.checked) return;
    const d = await getJSON(base() + "&after_id=" + last);
    if (d.count) {
      const stick = atBottom();
      rows.insertAdjacentHTML("beforeend", d.html);
      last = d.last_id;
      const none = document.getElementById("no-logs");
      if (none) none.remove();
      if (stick) scroller.scrollTop = scroller.scrollHeight;
    }
  }
  return { tail, live: isLive };
}

// -- the task-run table: pages fetched from the server --------------------------------------------------------
function taskTable(runId) {
  const sec = document.getElementById("task-runs");
  const st = { offset: 0, limit: Number(sec.dataset.limit), total: Number(sec.dataset.total), state: "", task: "",
    sort: "start" };
  const rows = document.getElementById("task-rows");
  const pageInput = document.getElementById("tr-page");
  let seq = 0;
  async function load() {
    const my = ++seq;
    const qs = new URLSearchParams({ offset: st.offset, limit: st.limit, state: st.state, task: st.task, sort: st.sort });
    const d = await getJSON("/api/ui/flow-runs/" + runId + "/task-runs?" + qs);
    if (my !== seq) return;  // a newer request was made meanwhile
    st.total = d.total;
    if (st.offset >= st.total && st.total > 0) { st.offset = Math.floor((st.total - 1) / st.limit) * st.limit; return load(); }
    swap(rows, d.html);
    const pages = Math.max(1, Math.ceil(st.total / st.limit));
    document.getElementById("tr-total").textContent = st.total;
    document.getElementById("tr-pages").textContent = pages;
    document.getElementById("tr-range").textContent = (st.total ? st.offset + 1 : 0) + "–" + Math.min(st.offset + st.limit, st.total);
    if (document.activeElement !== pageInput) pageInput.value = Math.floor(st.offset / st.limit) + 1;
    const f = [st.task ? "task " + st.task.split(".").pop() : "", st.state ? "state " + st.state.toLowerCase() : ""].filter(Boolean);
    document.getElementById("tr-filter").textContent = f.length ? "(" + f.join(", ") + ")" : "";
    sec.dataset.total = st.total;
  }
  function go(offset) {
    const lastPage = Math.max(0, Math.floor((st.total - 1) / st.limit)) * st.limit;
    st.offset = Math.min(Math.max(0, offset), lastPage);
    load();
  }
  sec.querySelectorAll("button[data-page]").forEach((b) => b.addEventListener("click", () => {
    const p = b.dataset.page;
    go(p === "first" ? 0 : p === "prev" ? st.offset - st.limit : p === "next" ? st.offset + st.limit : Infinity);
  }));
  pageInput.addEventListener("change", () => go((Number(pageInput.value) - 1) * st.limit));
  document.getElementById("tr-sort").addEventListener("change", (e) => { st.sort = e.target.value; go(0); });
  document.getElementById("task-counts").addEventListener("click", (e) => {
    const a = e.target.closest("[data-filter-state],[data-filter-task]");
    if (!a) return;
    e.preventDefault();
    st.state = a.dataset.filterState || "";
    st.task = a.dataset.filterTask || "";
    document.querySelectorAll("#task-counts .active").forEach((x) => x.classList.remove("active"));
    a.classList.add("active");
    go(0);
    sec.scrollIntoView({ behavior: "smooth", block: "start" });
  });
  return { load };
}

// -- the timeline: lanes of buckets aggregated on the server; wheel zooms, drag pans ---------------------------
function timeline(runId) {
  const wrap = document.getElementById("timeline");
  const canvas = document.getElementById("tl-canvas");
  const tip = document.getElementById("tl-tip");
  const info = document.getElementById("tl-info");
  const ctx = canvas.getContext("2d");
  const LANE = 18, LABEL = 160, AXIS = 18;
  let data = null, view = null, full = null, zoomed = false, pending = null, seq = 0, drag = null;

  function width() { return wrap.clientWidth; }
  async function fetchView() {
    const my = ++seq;
    const plot = Math.max(50, width() - LABEL);
    const qs = new URLSearchParams({ buckets: Math.min(600, Math.floor(plot / 3)) });
    if (view) { qs.set("start", view.start); qs.set("end", view.end); }
    const d = await getJSON("/api/ui/flow-runs/" + runId + "/timeline?" + qs);
    if (my !== seq) return;
    data = d;
    if (!view || !zoomed) { view = { start: d.start, end: d.end }; full = { start: d.start, end: d.end }; }
    draw();
  }
  function schedule() { clearTimeout(pending); pending = setTimeout(fetchView, 120); }
  function draw() {
    if (!data) return;
    const dpr = window.devicePixelRatio || 1;
    const W = width(), lanes = data.lanes.length, H = Math.max(40, lanes * LANE + AXIS + 4);
    canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.height = H + "px";
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "12px system-ui, sans-serif";
    info.textContent = data.total ? data.total + " task runs · " + fmtTime(view.start) + " → " + fmtTime(view.end) : "no task runs started yet";
    if (!lanes) return;
    const plot = W - LABEL, span = view.end - view.start || 1, bw = (data.end - data.start) / data.buckets;
    let max = 1;
    for (const ln of data.lanes) for (const [, cell] of ln.cells) { let n = 0; for (const k in cell) n += cell[k]; if (n > max) max = n; }
    data.lanes.forEach((ln, row) => {
      const y = row * LANE;
      ctx.fillStyle = row % 2 ? "#f3f4f6" : "#fafbfc";
      ctx.fillRect(0, y, W, LANE);
      ctx.fillStyle = "#1d2430";
      ctx.fillText(ln.name.length > 22 ? ln.name.slice(0, 21) + "…" : ln.name, 4, y + 13);
      for (const [i, cell] of ln.cells) {
        const t0 = data.start + i * bw, x0 = LABEL + ((t0 - view.start) / span) * plot;
        const x1 = LABEL + ((t0 + bw - view.start) / span) * plot;
        if (x1 < LABEL || x0 > W) continue;
        let n = 0, top = null;
        for (const k in cell) n += cell[k];
        for (const s of PRIORITY) if (cell[s]) { top = s; break; }
        ctx.globalAlpha = 0.35 + 0.65 * Math.log1p(n) / Math.log1p(max);
        ctx.fillStyle = COLORS[top] || "#94a3b8";
        ctx.fillRect(Math.max(LABEL, x0), y + 2, Math.max(1, x1 - Math.max(LABEL, x0)), LANE - 4);
        ctx.globalAlpha = 1;
      }
    });
    const ay = lanes * LANE + 13;
    ctx.fillStyle = "#6b7380";
    for (let k = 0; k <= 4; k++) {
      const x = LABEL + (plot * k) / 4, t = view.start + (span * k) / 4;
      const label = fmtTime(t).slice(11, 23);
      ctx.fillText(label, Math.min(W - 80, Math.max(LABEL, x - 40)), ay);
    }
  }
  function timeAt(px) { return view.start + ((px - LABEL) / (width() - LABEL)) * (view.end - view.start); }
  canvas.addEventListener("wheel", (e) => {
    if (!view) return;
    e.preventDefault();
    const rect = canvas.getBoundingClientRect(), px = e.clientX - rect.left;
    if (px < LABEL) return;
    const t = timeAt(px), f = e.deltaY > 0 ? 1.25 : 0.8;
    const minSpan = 1e-3;
    let s = t - (t - view.start) * f, en = t + (view.end - t) * f;
    if (en - s < minSpan) return;
    if (full) { s = Math.max(s, full.start - (full.end - full.start)); en = Math.min(en, full.end + (full.end - full.start)); }
    view = { start: s, end: en }; zoomed = true;
    requestAnimationFrame(draw); schedule();
  }, { passive: false });
  canvas.addEventListener("mousedown", (e) => { if (view) drag = { x: e.clientX, view: { ...view } }; wrap.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { if (drag) { drag = null; wrap.style.cursor = ""; schedule(); } });
  window.addEventListener("mousemove", (e) => {
    if (drag) {
      const dt = ((e.clientX - drag.x) / (width() - LABEL)) * (drag.view.end - drag.view.start);
      view = { start: drag.view.start - dt, end: drag.view.end - dt }; zoomed = true;
      requestAnimationFrame(draw);
    }
  });
  canvas.addEventListener("mousemove", (e) => {
    if (!data || drag) { tip.hidden = true; return; }
    const rect = canvas.getBoundingClientRect(), px = e.clientX - rect.left, py = e.clientY - rect.top;
    const ln = data.lanes[Math.floor(py / LANE)];
    if (!ln || px < LABEL) { tip.hidden = true; return; }
    const bw = (data.end - data.start) / data.buckets, i = Math.floor((timeAt(px) - data.start) / bw);
    const found = ln.cells.find((c) => c[0] === i);
    const counts = found ? Object.entries(found[1]).map(([s, n]) => n + " " + s.toLowerCase()).join(", ") : "none running";
    tip.textContent = ln.name + "\n" + fmtTime(data.start + i * bw) + "\n" + counts;
    tip.hidden = false;
    tip.style.left = Math.min(px + 12, width() - 200) + "px"; tip.style.top = py + 12 + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  document.getElementById("tl-reset").addEventListener("click", () => { zoomed = false; view = null; fetchView(); });
  window.addEventListener("resize", () => { draw(); schedule(); });
  fetchView();
  return { refresh: () => (zoomed ? null : fetchView()) };
}

// -- a flow run ---------------------------------------------------------------------------------------------------
// The Cancel button: Prefect's cancel, a proposed Cancelling state (a run not started ends Cancelled at once; a
// running one is stopped by the worker or serve() process running it). The header is re-rendered by polling,
// so the click is handled on the page, not on the button.
async function cancelRun(button) {
  if (!window.confirm("Cancel this flow run? A running run is stopped by the process running it.")) return;
  button.disabled = true;
  const err = document.getElementById("cancel-error");
  const r = await fetch("/api/flow_runs/" + button.dataset.id + "/set_state", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ state: { type: "CANCELLING", name: "Cancelling", message: "Cancelled from the web UI." } }) });
  const d = r.ok ? await r.json() : null;
  if (!d || d.status === "ABORT") {
    err.textContent = "The run could not be cancelled: " + (d ? d.details.reason : "HTTP " + r.status);
    err.hidden = false;
    button.disabled = false;
    return;
  }
  location.reload();
}

function flowRunPage() {
  const root = document.getElementById("flow-run");
  const runId = root.dataset.id;
  root.addEventListener("click", (e) => {
    const b = e.target.closest("#cancel-run");
    if (b && !b.disabled) cancelRun(b);
  });
  const table = taskTable(runId);
  const tl = timeline(runId);
  const logs = logsPanel(true);
  let final = root.dataset.final === "true", ticks = 0;
  if (final) return;
  every(POLL_MS, async () => {
    if (document.hidden) return;
    const d = await getJSON("/api/ui/flow-runs/" + runId + "/summary");
    swap(document.getElementById("run-header"), d.header_html);
    swap(document.getElementById("states"), d.states_html);
    swap(document.getElementById("artifacts"), d.artifacts_html);
    const counts = document.getElementById("task-counts");
    if (!counts.querySelector(".active")) swap(counts, d.counts_html);
    await table.load();
    if (logs) await logs.tail();
    if (++ticks % 2 === 0 || d.final) tl.refresh();
    if (d.final) { root.dataset.final = "true"; final = true; return false; }
  });
}

function taskRunPage() {
  const root = document.getElementById("task-run");
  const logs = logsPanel(true);
  if (root.dataset.final === "true") return;
  every(POLL_MS, async () => {
    if (document.hidden) return;
    if (logs) await logs.tail();
    const d = await getJSON("/api/ui/task-runs/" + root.dataset.id + "/state");
    if (d.final) { location.reload(); return false; }
  });
}

// -- the dashboard, flows, artifacts and variables: the page itself fetched again and its content swapped in place --
const SNAPSHOT_PAGES = ["dashboard", "flows", "artifacts", "artifact-key", "artifact", "variables"];

function snapshotPage() {
  const main = document.querySelector("main");
  every(3000, async () => {
    if (document.hidden) return;
    const r = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!r.ok) throw new Error(location.href + ": HTTP " + r.status);
    const fresh = new DOMParser().parseFromString(await r.text(), "text/html").querySelector("main");
    // the server escaped what it rendered; parsed HTML inserted this way runs no script either
    if (fresh) swap(main, fresh.innerHTML);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "flow-runs") flowRunsPage();
  else if (page === "flow-run") flowRunPage();
  else if (page === "task-run") taskRunPage();
  else if (SNAPSHOT_PAGES.includes(page)) snapshotPage();
});
