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
  function filter(state, task, chip) {
    st.state = state;
    st.task = task;
    document.querySelectorAll("#task-counts .active").forEach((x) => x.classList.remove("active"));
    if (chip) chip.classList.add("active");
    go(0);
    sec.scrollIntoView({ behavior: "smooth", block: "start" });
  }
  document.getElementById("task-counts").addEventListener("click", (e) => {
    const a = e.target.closest("[data-filter-state],[data-filter-task]");
    if (!a) return;
    e.preventDefault();
    filter(a.dataset.filterState || "", a.dataset.filterTask || "", a);
  });
  return { load, filterTask: (task) => filter("", task, null) };
}

// -- the timeline: lanes of buckets aggregated on the server; wheel zooms, drag pans ---------------------------
// A card's canvas chart: its box (#id), canvas (#prefix-canvas), tooltip (#prefix-tip) and caption (#prefix-info).
function canvasCard(id, prefix) {
  const canvas = document.getElementById(prefix + "-canvas");
  return { wrap: document.getElementById(id), canvas, ctx: canvas.getContext("2d"),
    tip: document.getElementById(prefix + "-tip"), info: document.getElementById(prefix + "-info") };
}

function timeline(runId) {
  const { wrap, canvas, tip, info, ctx } = canvasCard("timeline", "tl");
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

// -- the run graph: task runs (or, past a few hundred, tasks) in layers left to right, arrows from upstream -------
function layoutGraph(g) {
  // layer = longest path from a source (Kahn's order); nodes on a cycle (tasks feeding themselves) follow their
  // placed predecessors; within a layer, ordered by their predecessors' mean position (fewer crossings)
  const n = g.nodes.length, preds = g.nodes.map(() => []), succ = g.nodes.map(() => []), indeg = new Array(n).fill(0);
  for (const [a, b] of g.edges) if (a !== b) { preds[b].push(a); succ[a].push(b); indeg[b]++; }
  const layer = new Array(n).fill(-1), queue = [];
  for (let i = 0; i < n; i++) if (!indeg[i]) { layer[i] = 0; queue.push(i); }
  for (let k = 0; k < queue.length; k++) {
    const v = queue[k];
    for (const w of succ[v]) { layer[w] = Math.max(layer[w], layer[v] + 1); if (--indeg[w] === 0) queue.push(w); }
  }
  for (let i = 0; i < n; i++) if (layer[i] < 0) layer[i] = 1 + Math.max(0, ...preds[i].map((p) => layer[p]));
  const layers = [];
  for (let i = 0; i < n; i++) (layers[layer[i]] = layers[layer[i]] || []).push(i);
  const row = new Array(n).fill(0);
  layers.forEach((ids, li) => {
    if (li) {
      const key = (i) => (preds[i].length ? preds[i].reduce((s, p) => s + row[p], 0) / preds[i].length : Infinity);
      const keys = new Map(ids.map((i) => [i, key(i)]));
      ids.sort((a, b) => keys.get(a) - keys.get(b) || a - b);
    }
    ids.forEach((i, r) => { row[i] = r; });
  });
  return { layer, row, layers };
}

function runGraph(runId, filterTask) {
  const { wrap, canvas, tip, info, ctx } = canvasCard("graph", "graph");
  const NW = 170, COL = 230, PAD = 12;
  let g = null, boxes = [], seq = 0, scale = 1;

  function draw() {
    const tasks = g.mode === "tasks", NH = tasks ? 40 : 24, ROW = NH + 12;
    const { layer, row, layers } = layoutGraph(g);
    const depth = Math.max(1, ...layers.map((l) => (l ? l.length : 0)));
    const W = Math.max(wrap.clientWidth - 2, PAD * 2 + (layers.length - 1) * COL + NW), H = PAD * 2 + depth * ROW;
    const dpr = window.devicePixelRatio || 1;
    scale = Math.min(1, 16000 / (W * dpr), 16000 / (H * dpr));  // a canvas past ~32k pixels draws nothing
    canvas.width = W * dpr * scale; canvas.height = H * dpr * scale;
    canvas.style.width = W * scale + "px"; canvas.style.height = H * scale + "px";
    ctx.setTransform(dpr * scale, 0, 0, dpr * scale, 0, 0);
    ctx.clearRect(0, 0, W, H);
    boxes = g.nodes.map((nd, i) => ({ x: PAD + layer[i] * COL, y: PAD + row[i] * ROW, w: NW, h: NH, i }));
    const maxN = Math.max(1, ...g.edges.map((e) => e[2]));
    ctx.font = "11px system-ui, sans-serif";
    let drawn = 0;
    for (const [a, b, count] of g.edges) {
      const p = boxes[a], q = boxes[b];
      const x0 = p.x + p.w, y0 = p.y + p.h / 2, x1 = q.x, y1 = q.y + q.h / 2;
      ctx.strokeStyle = "#64748b";
      ctx.lineWidth = tasks ? 1 + 3 * Math.log1p(count) / Math.log1p(maxN) : 1;
      ctx.beginPath();
      if (x1 > x0) {  // forward: a curve between the layers
        const mx = (x0 + x1) / 2;
        ctx.moveTo(x0, y0); ctx.bezierCurveTo(mx, y0, mx, y1, x1 - 6, y1);
      } else {  // to itself or backwards (a task that feeds itself): a loop over the top
        const top = Math.min(p.y, q.y) - 10;
        ctx.moveTo(p.x + p.w - 20, p.y); ctx.bezierCurveTo(p.x + p.w, top, q.x + 20, top, q.x + 30, q.y);
      }
      ctx.stroke();
      if (x1 > x0) {
        ctx.fillStyle = "#64748b";
        ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x1 - 7, y1 - 4); ctx.lineTo(x1 - 7, y1 + 4); ctx.fill();
      }
      if (tasks) { ctx.fillStyle = "#1d2430"; ctx.fillText(String(count), (x0 + x1) / 2 - 8, (y0 + y1) / 2 - 4); }
      drawn++;
    }
    for (const bx of boxes) {
      const nd = g.nodes[bx.i];
      ctx.fillStyle = "#fff"; ctx.strokeStyle = "#cbd5e1"; ctx.lineWidth = 1;
      ctx.fillRect(bx.x, bx.y, bx.w, bx.h); ctx.strokeRect(bx.x + 0.5, bx.y + 0.5, bx.w - 1, bx.h - 1);
      if (tasks) {  // a bar of the task's runs by state
        let x = bx.x + 1;
        for (const [s, k] of Object.entries(nd.states)) {
          const w = ((bx.w - 2) * k) / nd.total;
          ctx.fillStyle = COLORS[s] || "#94a3b8"; ctx.fillRect(x, bx.y + bx.h - 7, Math.max(1, w), 6); x += w;
        }
      } else { ctx.fillStyle = COLORS[nd.state] || "#94a3b8"; ctx.fillRect(bx.x, bx.y, 5, bx.h); }
      ctx.fillStyle = "#1d2430";
      const label = nd.name.length > 24 ? nd.name.slice(0, 23) + "…" : nd.name;
      ctx.fillText(label, bx.x + 9, bx.y + 15);
      if (tasks) { ctx.fillStyle = "#6b7380"; ctx.fillText(nd.total + " runs", bx.x + 9, bx.y + 28); }
    }
    // what was drawn, for people reading the page's markup and for the browser tests
    canvas.dataset.mode = g.mode; canvas.dataset.nodes = boxes.length; canvas.dataset.edges = drawn;
    const deps = drawn + (drawn === 1 ? " dependency" : " dependencies");
    info.textContent = !g.total ? "no task runs yet" : tasks
      ? g.total + " task runs as " + g.nodes.length + " tasks" + (g.hidden ? " (" + g.hidden + " smaller tasks not drawn)" : "") + " · " + deps
      : g.total + " task runs · " + deps;
  }
  function at(e) {
    const r = canvas.getBoundingClientRect(), x = (e.clientX - r.left) / scale, y = (e.clientY - r.top) / scale;
    return boxes.find((b) => x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h);
  }
  canvas.addEventListener("mousemove", (e) => {
    const b = g && at(e);
    canvas.style.cursor = b ? "pointer" : "";
    if (!b) { tip.hidden = true; return; }
    const nd = g.nodes[b.i];
    tip.textContent = g.mode === "tasks"
      ? nd.task_key + "\n" + Object.entries(nd.states).map(([s, k]) => k + " " + s.toLowerCase()).join(", ")
      : nd.name + "\n" + nd.state.toLowerCase();
    tip.hidden = false;
    tip.style.left = b.x * scale + "px"; tip.style.top = (b.y + b.h) * scale + 4 + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (e) => {
    const b = g && at(e);
    if (!b) return;
    const nd = g.nodes[b.i];
    if (g.mode === "tasks") filterTask(nd.task_key); else location.href = "/task-runs/" + nd.id;
  });
  async function load() {
    const my = ++seq;
    const d = await getJSON("/api/ui/flow-runs/" + runId + "/graph");
    if (my !== seq) return;
    g = d;
    draw();
  }
  window.addEventListener("resize", () => { if (g) draw(); });
  load();
  return { refresh: load };
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
  const graph = runGraph(runId, table.filterTask);
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
    if (ticks % 4 === 0 || d.final) graph.refresh();  // 0.6 s of server time at 10^5 task runs: seldom
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
