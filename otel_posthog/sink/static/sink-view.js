// The local sink's read-only journey view: filters in the URL, a table, one SVG chart per endpoint.
"use strict";

const FIXED = {
  api_request: "#2563eb", slow_request: "#d97706", api_error: "#dc2626",
  $exception: "#9f1239", $pageview: "#6b7280", $identify: "#0f766e", button_click: "#7c3aed",
};
const PALETTE = ["#0891b2", "#65a30d", "#c026d3", "#ea580c", "#4f46e5", "#0d9488", "#be123c", "#a16207"];
const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function colour(name) {
  if (FIXED[name]) return FIXED[name];
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

// Any stored value as text, never throwing: strings as they are, other values as JSON
// (an object property may be {"toString": 1}, which String() cannot convert).
function text(v) {
  if (v === undefined || v === null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return "?";
  }
}

function el(tag, attrs = {}, content) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, text(v));
  if (content !== undefined) node.textContent = text(content);
  return node;
}

function badge(name) {
  const b = el("span", { class: "badge", "data-event": name }, name);
  b.style.background = colour(name);
  return b;
}

function filters() {
  const q = new URLSearchParams(location.search);
  return { user: q.get("user") || "", session: q.get("session") || "", request: q.get("request") || "" };
}

function setFilters(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  history.pushState(null, "", q.toString() ? "?" + q : location.pathname);
  refresh();
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

function fillSelect(select, rows, current) {
  const keep = select.options[0];
  select.replaceChildren(keep);
  const values = rows.map((r) => r.value);
  if (current && !values.includes(current)) rows = [{ value: current, count: 0 }, ...rows];
  for (const r of rows) select.append(el("option", { value: r.value }, `${r.value} (${r.count})`));
  select.value = current;
}

const fmtTime = (ts) => ts.slice(11, 19);
const ms = (v) => (typeof v === "number" ? Math.round(v) : "");

// LLM calls ($ai_generation, $ai_embedding, $ai_span): model, tokens, latency, errors
const AI_DETAILS = [["$ai_model", "model"], ["$ai_input_tokens", "input_tokens"],
  ["$ai_output_tokens", "output_tokens"], ["$ai_latency", "latency_s"],
  ["$ai_http_status", "http_status"], ["$ai_error", "error"]];

function details(ev) {
  const skip = new Set(["request_id", "endpoint", "status_code", "response_time_ms", "distinct_id",
    "session_id", "source", "path", "method", "environment", "service", "traceback"]);
  const ai = ev.event.startsWith("$ai_")
    ? AI_DETAILS.filter(([k]) => ev.properties[k] !== undefined).map(([k, label]) => [label, ev.properties[k]])
    : [];
  return [...ai, ...Object.entries(ev.properties).filter(([k]) => !k.startsWith("$") && !skip.has(k))]
    .map(([k, v]) => `${k}: ${text(v)}`)
    .join(", ");
}

function renderTable(events) {
  const body = $("timeline").tBodies[0];
  body.replaceChildren();
  for (const ev of events) {
    const p = ev.properties;
    const tr = el("tr", { class: p.source === "backend" ? "backend" : "frontend", "data-event": ev.event });
    tr.append(el("td", { class: "mono", title: ev.timestamp }, fmtTime(ev.timestamp)));
    const name = el("td");
    name.append(badge(ev.event));
    tr.append(name);
    const person = el("td", { class: "mono" });
    person.append(el("a", { href: "?user=" + encodeURIComponent(ev.distinct_id) }, ev.distinct_id));
    if (p.$process_person_profile === false) {
      // no verified person (no JWT, no identify()): the id may be anything a client sent
      person.append(el("span", { class: "badge unverified", title: "no verified person: $process_person_profile is false" }, "unverified"));
    }
    tr.append(person);
    const rid = el("td");
    if (p.request_id) rid.append(el("a", { class: "rid", href: "?request=" + encodeURIComponent(text(p.request_id)) }, p.request_id));
    tr.append(rid);
    tr.append(el("td", { class: "mono" }, p.endpoint || ""));
    tr.append(el("td", {}, p.status_code));
    const aiMs = typeof p.$ai_latency === "number" ? p.$ai_latency * 1000 : undefined;
    tr.append(el("td", {}, ms(p.duration_ms ?? p.response_time_ms ?? aiMs)));
    tr.append(el("td", { class: "details" }, details(ev)));
    body.append(tr);
  }
  $("empty").hidden = events.length > 0;
}

function renderLegend(events) {
  const names = [...new Set(events.map((e) => e.event))].sort();
  $("legend").replaceChildren(...names.map(badge));
}

function renderCharts(events) {
  const byEndpoint = new Map();
  for (const ev of events) {
    if (ev.event !== "api_request" || typeof ev.properties.response_time_ms !== "number") continue;
    const key = `${text(ev.properties.method)} ${text(ev.properties.endpoint) || "?"}`.trim();
    if (!byEndpoint.has(key)) byEndpoint.set(key, []);
    byEndpoint.get(key).push(ev);
  }
  // slow = what the bridge called slow (per-route thresholds), not a guess made here
  const slow = new Set(), thresholds = new Map();
  for (const ev of events) {
    if (ev.event !== "slow_request") continue;
    slow.add(text(ev.properties.request_id));
    if (typeof ev.properties.threshold_ms === "number") thresholds.set(text(ev.properties.endpoint), ev.properties.threshold_ms);
  }
  const boxes = [];
  for (const [key, evs] of [...byEndpoint].sort()) {
    boxes.push(chart(key, evs, thresholds.get(text(evs[0].properties.endpoint)), slow));
  }
  $("charts").replaceChildren(...boxes);
}

function chart(endpoint, evs, threshold, slow) {
  const W = 300, H = 110, L = 40, B = 16, T = 8, R = 8;
  const times = evs.map((e) => Date.parse(e.timestamp));
  const values = evs.map((e) => e.properties.response_time_ms);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const vmax = Math.max(...values, 1);
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  const box = el("div", { class: "chart", "data-endpoint": endpoint });
  const avg = values.reduce((a, b) => a + b, 0) / values.length;
  box.append(el("h3", {}, `${endpoint}  ·  ${evs.length} req, avg ${Math.round(avg)} ms, max ${Math.round(vmax)} ms`));
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `response time of ${endpoint}` });
  svg.append(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  svg.append(el("svg:line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(el("svg:text", { x: L - 4, y: T + 8, "text-anchor": "end" }, `${Math.round(vmax)}`));
  svg.append(el("svg:text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0 ms"));
  if (threshold !== undefined && threshold <= vmax) {
    svg.append(el("svg:line", { class: "threshold", x1: L, y1: y(threshold), x2: W - R, y2: y(threshold) }));
  }
  const order = evs.map((e, i) => i).sort((a, b) => times[a] - times[b]);
  if (order.length > 1) {
    svg.append(el("svg:polyline", { class: "line", points: order.map((i) => `${x(times[i])},${y(values[i])}`).join(" ") }));
  }
  for (const i of order) {
    const st = evs[i].properties.status_code;
    const rid = text(evs[i].properties.request_id);
    const fill = typeof st === "number" && st >= 500 ? FIXED.api_error : slow.has(rid) ? FIXED.slow_request : FIXED.api_request;
    const dot = el("svg:circle", { class: "point", cx: x(times[i]), cy: y(values[i]), r: 3.5, fill });
    dot.append(el("svg:title", {}, `${fmtTime(evs[i].timestamp)}  ${Math.round(values[i])} ms  status ${text(st)}  ${rid}`));
    svg.append(dot);
  }
  svg.append(el("svg:text", { x: L, y: H - 3 }, fmtTime(new Date(t0).toISOString())));
  svg.append(el("svg:text", { x: W - R, y: H - 3, "text-anchor": "end" }, fmtTime(new Date(t1).toISOString())));
  box.append(svg);
  return box;
}

let busy = false;
let again = false; // a refresh asked for while one was running: run it after, never drop it
async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  try {
    const f = filters();
    $("request").value = f.request;
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    const [facets, data] = await Promise.all([getJSON("/_sink/facets"), getJSON("/_sink/events?" + q)]);
    fillSelect($("user"), facets.people, f.user);
    fillSelect($("session"), facets.sessions, f.session);
    $("total").textContent = `${facets.total} events stored`;
    const what = Object.entries(f).filter(([, v]) => v).map(([k, v]) => `${k} = ${v}`).join(", ") || "all events";
    $("summary").textContent = `${data.events.length} events for ${what}${data.truncated ? " (newest only)" : ""}`;
    renderLegend(data.events);
    renderCharts(data.events);
    renderTable(data.events);
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    $("summary").textContent = "Cannot read the sink: " + err.message;
  } finally {
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

function init() {
  const fromForm = () => setFilters({
    user: $("user").value, session: $("session").value, request: $("request").value.trim(),
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); fromForm(); });
  $("user").addEventListener("change", fromForm);
  $("session").addEventListener("change", fromForm);
  $("clear").addEventListener("click", () => setFilters({}));
  window.addEventListener("popstate", refresh);
  setInterval(() => { if ($("live").checked && !document.hidden) refresh(); }, 3000);
  refresh();
}

document.addEventListener("DOMContentLoaded", init);
