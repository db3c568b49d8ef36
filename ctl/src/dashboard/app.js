// The dnsrail dashboard: polls the control process's API once a second and
// draws with plain SVG (no external code: the page must work offline).
// Rates are deltas between two reports over the engine's own uptime, so a
// slow or throttled browser still shows true rates; an engine restart
// (counters going backwards) starts the series again.
"use strict";

const HISTORY = 120;      // points of the qps chart (seconds)
const LAT_WINDOW = 10;    // reports the latency histogram spans
const NS = "http://www.w3.org/2000/svg";

const state = { reports: [], series: [], backendsPrev: null };

function $(id) { return document.getElementById(id); }

function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + " M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + " k";
  return Math.round(v).toString();
}

function fmtUs(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + " s";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " ms";
  return v + " µs";
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

// Sum of the backends' latency histograms of one report.
function latencyOf(report) {
  const n = report.latency_bounds_us.length;
  const sum = new Array(n).fill(0);
  for (const b of report.backends) b.latency.forEach((c, i) => { sum[i] += c; });
  return sum;
}

// Quantile q of bucket counts, as the bucket's upper bound (µs).
function quantile(counts, bounds, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const want = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= want) return bounds[i];
  }
  return bounds[bounds.length - 1];
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

function drawQps(svg, series) {
  clear(svg);
  const W = 600, H = 220, L = 46, B = 18;
  const max = Math.max(10, ...series.map(p => Math.max(p.qin, p.qout, p.drops)));
  el("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }, svg);
  el("line", { class: "axis", x1: L, y1: 0, x2: L, y2: H - B }, svg);
  el("text", { x: 2, y: 12 }, svg).textContent = fmt(max);
  el("text", { x: 2, y: H - B }, svg).textContent = "0";
  el("text", { x: W - 60, y: H - 4 }, svg).textContent = "now";
  el("text", { x: L + 4, y: H - 4 }, svg).textContent = "-" + HISTORY + " s";
  const x = i => L + (W - L) * (HISTORY - series.length + i) / (HISTORY - 1);
  const y = v => (H - B) - (H - B - 4) * v / max;
  for (const k of ["qin", "qout", "drops"]) {
    const pts = series.map((p, i) => x(i).toFixed(1) + "," + y(p[k]).toFixed(1)).join(" ");
    el("polyline", { class: { qin: "in", qout: "out", drops: "drop" }[k], points: pts }, svg);
  }
  svg.dataset.points = series.length;
  svg.dataset.max = Math.round(max);
}

function drawLatency(svg, counts, bounds) {
  clear(svg);
  const W = 600, H = 220, L = 10, B = 18;
  const total = counts.reduce((a, b) => a + b, 0);
  // Buckets from 1 µs to ~1 s: log-linear, so their index is a log axis.
  const first = bounds.findIndex(b => b > 1);
  let last = bounds.findIndex(b => b >= 1e6);
  if (last < 0) last = bounds.length - 1;
  const n = last - first + 1;
  const bw = (W - L) / n;
  const max = Math.max(1, ...counts.slice(first, last + 1));
  el("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }, svg);
  for (let i = first; i <= last; i++) {
    if (counts[i] === 0) continue;
    const h = (H - B - 4) * counts[i] / max;
    el("rect", { class: "bar", x: L + (i - first) * bw, y: H - B - h, width: Math.max(1, bw - 1), height: h }, svg);
  }
  // Decade labels.
  for (const d of [10, 100, 1000, 10000, 100000, 1000000]) {
    const i = bounds.findIndex(b => b > d);
    if (i < first || i > last) continue;
    el("text", { x: L + (i - first) * bw, y: H - 4 }, svg).textContent = fmtUs(d);
  }
  svg.dataset.total = total;
}

// /api/backends rows: ctl's view (health, drain, weight) with the engine's
// counters; per-backend latency comes from the engine report.
function backendRows(backends, prev, report, dt) {
  const tbody = document.querySelector("#backends tbody");
  tbody.textContent = "";
  const rate = (b, k) => {
    const p = prev && prev.find(x => x.name === b.name);
    if (!p || b[k] === null || p[k] === null || dt <= 0) return null;
    return Math.max(0, (b[k] - p[k]) / dt);
  };
  const rates = backends.map(b => rate(b, "sent"));
  const sum = rates.reduce((a, r) => a + (r || 0), 0);
  backends.forEach((b, i) => {
    const tr = document.createElement("tr");
    const st = b.drained ? "drained" : b.health;
    const share = sum > 0 ? (rates[i] || 0) / sum : 0;
    const eng = report.backends.find(x => x.name === b.name);
    const lat = eng ? quantile(eng.latency, report.latency_bounds_us, 0.99) : null;
    // Why a backend is down: the engine's ejection (icmp, silent) while it
    // lasts, else the reason of the health checks' verdict.
    const why = b.health === "down" && !b.drained ? " (" + (b.ejected || b.reason || "health") + ")" : "";
    const cells = [b.name, b.address, st + why + (b.suspect ? " (suspect)" : ""), b.weight,
                   fmt(rates[i]), null, fmt(rate(b, "timeouts")), fmtUs(lat)];
    cells.forEach((c, j) => {
      const td = document.createElement("td");
      if (j === 2) td.className = st;
      if (j === 5) {
        const bar = document.createElement("span");
        bar.className = "share";
        bar.style.width = Math.round(share * 100) + "px";
        td.appendChild(bar);
        td.appendChild(document.createTextNode(" " + Math.round(share * 100) + " %"));
      } else {
        td.textContent = c;
      }
      tr.appendChild(td);
    });
    tr.dataset.qps = rates[i] === null ? "" : rates[i].toFixed(1);
    tbody.appendChild(tr);
  });
}

function ruleRows(report, prevReport, dt) {
  const tbody = document.querySelector("#rules tbody");
  tbody.textContent = "";
  // A runtime rule may share a file rule's name: key by both.
  const key = r => r.source + "/" + r.name;
  const before = new Map((prevReport ? prevReport.rules : []).map(r => [key(r), r.hits]));
  const rows = report.rules
    .map(r => ({
      name: r.source === "runtime" ? r.name + " (runtime)" : r.name,
      hits: r.hits,
      rate: before.has(key(r)) && dt > 0 ? (r.hits - before.get(key(r))) / dt : null,
    }))
    .filter(r => r.hits > 0)
    .sort((a, b) => (b.rate || 0) - (a.rate || 0) || b.hits - a.hits)
    .slice(0, 10);
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="3" class="muted">no rule hit yet</td>';
    tbody.appendChild(tr);
  }
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of [r.name, fmt(r.rate), fmt(r.hits)]) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

/// Each pool's cache: hit rate over the last second and since start.
function cacheRows(report, prevReport) {
  const caches = report.caches || [];
  $("cache-box").hidden = caches.length === 0;
  const tbody = document.querySelector("#cache tbody");
  tbody.textContent = "";
  const before = new Map(((prevReport && prevReport.caches) || []).map(c => [c.pool, c]));
  const rate = (h, m) => (h + m > 0 ? (100 * h / (h + m)).toFixed(1) + " %" : "–");
  for (const c of caches) {
    const p = before.get(c.pool);
    const tr = document.createElement("tr");
    tr.dataset.pool = c.pool;
    tr.dataset.hits = c.hits;
    const cells = [c.pool, p ? rate(c.hits - p.hits, c.misses - p.misses) : "–",
      rate(c.hits, c.misses), fmt(c.entries) + " of " + fmt(c.capacity), fmt(c.stale_hits)];
    for (const v of cells) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

async function tick() {
  let report, backends, status;
  try {
    [report, backends, status] = await Promise.all([
      getJSON("/api/stats?top_rules=50"), getJSON("/api/backends"), getJSON("/api/status")]);
    $("error").hidden = true;
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "cannot reach the API: " + e.message;
    $("engine").className = "pill bad";
    $("engine").textContent = "engine unreachable";
    return;
  }
  const prev = state.reports.at(-1);
  // A restarted engine: counters start again from zero.
  if (prev && (report.queries < prev.queries || report.pid !== prev.pid)) {
    state.reports = []; state.series = []; state.backendsPrev = null;
  }
  const last = state.reports.at(-1);
  const dt = last ? report.uptime_s - last.uptime_s : 0;
  const drops = r => Object.values(r.drops).reduce((a, b) => a + b, 0);
  if (last && dt > 0) {
    state.series.push({
      qin: (report.queries - last.queries) / dt,
      qout: (report.answers + report.local_replies - last.answers - last.local_replies) / dt,
      drops: (drops(report) - drops(last)) / dt,
    });
    if (state.series.length > HISTORY) state.series.shift();
  }
  state.reports.push(report);
  if (state.reports.length > LAT_WINDOW + 1) state.reports.shift();

  const now = state.series.at(-1);
  $("qps-in").textContent = now ? fmt(now.qin) : "–";
  $("qps-out").textContent = now ? fmt(now.qout) : "–";
  $("drops").textContent = now ? fmt(now.drops) : "–";
  $("in-flight").textContent = fmt(report.in_flight);
  if (now) { $("qps-in").dataset.value = now.qin.toFixed(1); $("qps-out").dataset.value = now.qout.toFixed(1); }

  // Latency over the window: newest histogram minus the oldest one kept.
  const bounds = report.latency_bounds_us;
  const newest = latencyOf(report);
  const oldest = state.reports.length > 1 ? latencyOf(state.reports[0]) : new Array(newest.length).fill(0);
  const win = newest.map((c, i) => Math.max(0, c - oldest[i]));
  for (const [id, q] of [["p50", 0.5], ["p90", 0.9], ["p99", 0.99]]) $(id).textContent = fmtUs(quantile(win, bounds, q));
  drawLatency($("chart-latency"), win, bounds);
  drawQps($("chart-qps"), state.series);
  backendRows(backends, state.backendsPrev, report, dt);
  state.backendsPrev = backends;
  ruleRows(report, last, dt);
  cacheRows(report, last);

  const eng = status.engine || {};
  $("engine").className = "pill " + (eng.attached ? "ok" : "bad");
  $("engine").textContent = eng.attached
    ? "engine " + report.io + ", " + report.workers + " worker" + (report.workers === 1 ? "" : "s") + ", up " + Math.round(report.uptime_s) + " s"
    : "engine not attached";
  // The node as the routers see it: healthy (announced), draining, down.
  const node = status.node;
  $("node").hidden = !node;
  if (node) {
    const a = node.announce;
    $("node").className = "pill " + (node.healthy ? "ok" : node.drain !== "active" ? "warn" : "bad");
    $("node").textContent = "node " + node.state + (node.drain !== "active" ? ", " + node.drain : "")
      + (a ? ", " + (a.desired === "announce" ? "announced" : "withdrawn") + " (BIRD: " + (a.routes ?? "?") + " route" + (a.routes === 1 ? "" : "s") + ")" : "");
    $("node").title = node.problems.join("; ");
  }
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.ticks = (Number(document.body.dataset.ticks || 0) + 1).toString();
}

tick();
setInterval(tick, 1000);
