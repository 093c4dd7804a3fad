// The console's page: renders the JSON API under /v1/ into a few views, one per URL under
// /ui/, so that every view can be linked to and reloaded. Data is written with textContent
// only: nothing an event carries is ever parsed as HTML.
"use strict";

const TOKEN_KEY = "spillway-console-token";
const app = document.getElementById("app");
const stamp = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
let me = null;

// ---- helpers -------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces an element's children, skipping the absent ones (null, false, undefined).
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

const time = (ms) => (ms === null || ms === undefined ? "" : stamp.format(new Date(ms)));
const badge = (text) => h("span", { class: `badge ${text}` }, String(text).replace(/_/g, " "));
const link = (href, text) => h("a", { href, "data-nav": true }, text);
const isOperator = () => me && me.role === "operator";

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(path, options = {}) {
  const headers = { accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const body = await reply.json().catch(() => null);
  if (reply.status === 401) {
    signIn();
  }
  if (!reply.ok) throw new ApiFailure(reply.status, body);
  return body;
}

function failure(e) {
  return h("div", { class: "notice error", role: "alert" }, e.code ? `${e.code}: ${e.message}` : String(e.message || e));
}

function table(columns, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.title)))),
    h("tbody", {}, rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {},
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(r)))))));
}

function navigate(url, replace) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

// ---- sign-in -------------------------------------------------------------------------------

function signIn() {
  if (document.getElementById("sign-in")) return;
  const input = h("input", { type: "password", name: "token", required: true, autocomplete: "current-password", "aria-label": "Token" });
  const dialog = h("dialog", { id: "sign-in" },
    h("form", { method: "dialog", onsubmit: (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      dialog.close();
      dialog.remove();
      start();
    } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "A console token (kept in this tab only)."),
    input, " ", h("button", { class: "primary", type: "submit" }, "Sign in")));
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
}

// ---- events --------------------------------------------------------------------------------

const FILTERS = ["source", "event_type", "status", "http_status", "subscription", "event_id", "dedupe_key", "from_ms", "to_ms"];
const STATUSES = ["", "pending", "delivered", "retrying", "dead_lettered", "quarantined"];

function localInput(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function filterForm(params) {
  const field = (name, label, attrs = {}) => h("label", {}, label,
    h("input", { name, value: params.get(name) || "", ...attrs }));
  const when = (name, label) => h("label", {}, label,
    h("input", { type: "datetime-local", name, value: localInput(params.get(name)) }));
  const status = h("select", { name: "status" }, STATUSES.map((s) =>
    h("option", { value: s, selected: params.get("status") === s }, s ? s.replace(/_/g, " ") : "any")));
  return h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(ev.target)) {
      if (!v) continue;
      next.set(k, k.endsWith("_ms") ? String(new Date(v).getTime()) : v);
    }
    navigate(`/ui/events?${next}`);
  } },
  field("source", "Source"), field("event_type", "Event type"),
  h("label", {}, "Status", status),
  field("http_status", "Last HTTP status", { type: "number", min: 100, max: 599 }),
  field("subscription", "Subscription"), field("dedupe_key", "Dedupe key"),
  when("from_ms", "Received from"), when("to_ms", "Received before"),
  h("button", { class: "primary", type: "submit" }, "Search"),
  h("a", { href: "/ui/events", "data-nav": true }, "Clear"));
}

function searchFilter(params) {
  const filter = {};
  for (const k of FILTERS) {
    const v = params.get(k);
    if (v) filter[k] = ["http_status", "from_ms", "to_ms"].includes(k) ? Number(v) : v;
  }
  return filter;
}

function bulkRetry(params) {
  const filter = searchFilter(params);
  const which = h("select", { name: "deliveries", "aria-label": "Deliveries" },
    h("option", { value: "dead_lettered" }, "dead letters"),
    h("option", { value: "not_delivered" }, "not delivered (dead or retrying)"),
    h("option", { value: "all" }, "every delivery"));
  const out = h("div", { class: "bulk-result" });
  const preview = async () => {
    fill(out, "Counting…");
    try {
      const body = { filter, deliveries: which.value };
      const p = await api("/v1/retries/preview", { method: "POST", body });
      const go = h("button", { class: "primary", type: "button", onclick: async () => {
        go.disabled = true;
        try {
          const done = await api("/v1/retries", { method: "POST", body: { ...body, expect_deliveries: p.deliveries } });
          fill(out, h("div", { class: "notice", role: "status" }, `Queued ${done.queued} of ${done.deliveries} deliveries.`));
        } catch (e) { fill(out, failure(e)); }
      } }, `Retry ${p.deliveries} deliveries`);
      fill(out, h("div", { class: "notice", role: "status" },
        `${p.events} events, ${p.deliveries} deliveries`,
        p.subscriptions.length ? `: ${p.subscriptions.map((s) => `${s.subscription} ${s.deliveries}`).join(", ")}` : "",
        p.more ? ` (over the limit of ${p.limit}: narrow the search)` : ""),
      p.deliveries > 0 && !p.more ? go : null);
    } catch (e) { fill(out, failure(e)); }
  };
  return h("details", { class: "panel" }, h("summary", {}, "Bulk retry of these events"),
    h("div", { class: "actions" }, "Retry", which, "of the events this search finds.",
      h("button", { type: "button", onclick: preview }, "Preview")), out);
}

async function eventsView(params) {
  const list = h("div", {}, "Loading…");
  fill(app, h("h1", {}, "Events"), filterForm(params), isOperator() ? bulkRetry(params) : null, list);
  const query = new URLSearchParams(params);
  if (!query.get("limit")) query.set("limit", "50");
  const page = await api(`/v1/events?${query}`);
  const columns = [
    { title: "Received", cell: (e) => link(`/ui/events/${encodeURIComponent(e.event_id)}`, time(e.received_ms)) },
    { title: "Source", cell: (e) => e.source },
    { title: "Type", cell: (e) => e.event_type || "" },
    { title: "Status", cell: (e) => badge(e.status) },
    { title: "HTTP", num: true, cell: (e) => e.last_http_status ?? "" },
    { title: "Dedupe key", cell: (e) => h("span", { class: "mono" }, e.dedupe_key || "") },
    { title: "Event id", cell: (e) => h("span", { class: "mono muted" }, e.event_id) },
  ];
  const pager = h("div", { class: "pager" });
  if (params.get("before")) pager.append(link(`/ui/events?${withoutCursor(params)}`, "← Newest"));
  if (page.next) {
    const older = new URLSearchParams(params);
    older.set("before", page.next);
    pager.append(link(`/ui/events?${older}`, "Older →"));
  }
  fill(list, page.events.length ? table(columns, page.events) : h("p", { class: "muted" }, "No event matches."), pager);
}

function withoutCursor(params) {
  const p = new URLSearchParams(params);
  p.delete("before");
  return p;
}

function prettyBody(body) {
  if (body.unavailable) return h("p", { class: "muted" }, `Body unavailable: ${body.unavailable}.`);
  if (body.object_uri && !body.text) return h("p", {}, "In object storage: ", h("code", {}, body.object_uri));
  if (body.base64) return h("pre", {}, body.base64);
  let text = body.text || "";
  try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as received */ }
  return h("pre", { class: "body" }, text, body.truncated ? "\n…" : "");
}

async function downloadBody(id) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const reply = await fetch(`/v1/events/${encodeURIComponent(id)}/body`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!reply.ok) throw new ApiFailure(reply.status, await reply.json().catch(() => null));
  // As bytes, whatever the sender said they were: never rendered on the console's origin.
  const bytes = await reply.arrayBuffer();
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  const a = h("a", { href: url, download: `${id}.body` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function eventView(id) {
  fill(app, h("p", {}, "Loading…"));
  const e = await api(`/v1/events/${encodeURIComponent(id)}`);
  const note = h("div", {});
  const retry = isOperator() && !e.quarantine_reason ? h("button", { class: "primary", type: "button", onclick: async () => {
    retry.disabled = true;
    try {
      const done = await api(`/v1/events/${encodeURIComponent(id)}/retry`, { method: "POST", body: {} });
      fill(note, h("div", { class: "notice", role: "status" }, `Retry queued to ${done.subscriptions.join(", ")}. New attempts appear below.`));
      follow(id, e.attempts.length);
    } catch (err) { fill(note, failure(err)); retry.disabled = false; }
  } }, "Retry") : null;
  const facts = [
    ["Source", e.source], ["Event type", e.event_type], ["Dedupe key", e.dedupe_key],
    ["Received", time(e.received_ms)], ["Size", `${e.body_bytes} bytes`], ["Content type", e.content_type],
    ["Kafka", `${e.topic} / partition ${e.partition} / offset ${e.offset}`],
    ["Object", e.object_uri], ["Batch", e.batch_id], ["Test event for", e.test_for],
    ["Quarantined", e.quarantine_reason],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  fill(app, 
    h("h1", {}, "Event ", h("span", { class: "mono" }, e.event_id), " ", badge(e.status)),
    h("div", { class: "actions" }, retry,
      h("button", { type: "button", onclick: () => downloadBody(id).catch((err) => fill(note, failure(err))) }, "Download body"),
      link(`/ui/events?source=${encodeURIComponent(e.source)}`, `More from ${e.source}`)),
    note,
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "Deliveries"),
    e.deliveries.length ? table([
      { title: "Subscription", cell: (d) => d.subscription },
      { title: "Status", cell: (d) => badge(d.status) },
      { title: "Attempts", num: true, cell: (d) => d.attempts },
      { title: "Last HTTP", num: true, cell: (d) => d.last_http_status ?? "" },
      { title: "Last", cell: (d) => time(d.last_ms) },
      { title: "Next due", cell: (d) => time(d.next_due_ms) },
      { title: "Error", cell: (d) => d.dead_reason || d.last_error || "" },
    ], e.deliveries) : h("p", { class: "muted" }, "No delivery yet."),
    h("h2", {}, "Attempts"),
    h("div", { id: "attempts" }, attemptsTable(e.attempts)),
    h("h2", {}, "Body"), prettyBody(e.body),
    h("h2", {}, "Headers"),
    table([{ title: "Name", cell: (p) => h("span", { class: "mono" }, p[0]) }, { title: "Value", cell: (p) => h("span", { class: "mono" }, p[1]) }],
      headerPairs(e.headers)));
}

// The headers as recorded: a list of [name, value] pairs (a name may repeat).
function headerPairs(headers) {
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers || {});
  return pairs.map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No attempt yet.");
  return table([
    { title: "Time", cell: (a) => time(a.at_ms) },
    { title: "Subscription", cell: (a) => a.subscription },
    { title: "#", num: true, cell: (a) => a.attempt },
    { title: "Outcome", cell: (a) => badge(a.outcome) },
    { title: "HTTP", num: true, cell: (a) => a.http_status ?? "" },
    { title: "Latency", num: true, cell: (a) => `${a.latency_ms} ms` },
    { title: "Then", cell: (a) => badge(a.next) },
    { title: "Error / response", cell: (a) => [a.error || a.dead_reason || "",
      a.response_head ? h("details", {}, h("summary", {}, "response"), h("pre", {}, a.response_head)) : null] },
  ], attempts, (a) => ({ class: `attempt ${a.outcome}`, "data-outcome": a.outcome }));
}

// After a retry: reloads the attempts every second for a minute until a new one shows.
async function follow(id, known) {
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    if (location.pathname !== `/ui/events/${encodeURIComponent(id)}`) return;
    const e = await api(`/v1/events/${encodeURIComponent(id)}`).catch(() => null);
    if (e && e.attempts.length > known) {
      eventView(id);
      return;
    }
  }
}

// ---- health, subscriptions, replay, audit --------------------------------------------------

const WINDOWS = [[900, "15 minutes"], [3600, "hour"], [21600, "6 hours"], [86400, "day"]];
const fixed = (n, digits = 1) => (n === null || n === undefined ? "" : Number(n).toFixed(digits));

// "name n, ..." for the counts above zero (the ingress starts every series at zero).
function counts(byName) {
  return Object.entries(byName).filter(([, n]) => n >= 0.5).map(([k, n]) => `${k} ${fixed(n, 0)}`).join(", ");
}

async function healthView(params) {
  const window = Number(params.get("window_s") || 3600);
  const picker = h("select", { "aria-label": "Window", onchange: (ev) => navigate(`/ui/health?window_s=${ev.target.value}`) },
    WINDOWS.map(([s, label]) => h("option", { value: s, selected: s === window }, `last ${label}`)));
  const title = h("div", { class: "actions" }, h("h1", {}, "Health"), picker);
  fill(app, title, h("p", {}, "Loading…"));
  const [subs, sources] = await Promise.all([
    api(`/v1/health/subscriptions?window_s=${window}`), api(`/v1/health/sources?window_s=${window}`)]);
  const metricsNote = subs.metrics === "ok" ? null : h("div", { class: "notice" },
    subs.metrics === "not_configured" ? "Circuit states, consumer lag and request counts need console.prometheus_url." : "Prometheus did not answer: its figures are missing.");
  fill(app, title, metricsNote,
    h("h2", {}, "Subscriptions"),
    table([
      { title: "Subscription", cell: (s) => link(`/ui/events?subscription=${encodeURIComponent(s.subscription)}`, s.subscription) },
      { title: "Circuit", cell: (s) => (s.circuit ? badge(s.circuit) : "") },
      { title: "Attempts", num: true, cell: (s) => s.attempts },
      { title: "Success", num: true, cell: (s) => (s.success_rate === null ? "" : `${fixed(s.success_rate * 100)} %`) },
      { title: "p50 ms", num: true, cell: (s) => fixed(s.latency_ms && s.latency_ms.p50, 0) },
      { title: "p95 ms", num: true, cell: (s) => fixed(s.latency_ms && s.latency_ms.p95, 0) },
      { title: "p99 ms", num: true, cell: (s) => fixed(s.latency_ms && s.latency_ms.p99, 0) },
      { title: "Pending", num: true, cell: (s) => s.pending },
      { title: "Oldest pending", cell: (s) => time(s.oldest_pending_received_ms) },
      { title: "Dead letters", num: true, cell: (s) => (s.dead_letters ? link(`/ui/events?status=dead_lettered&subscription=${encodeURIComponent(s.subscription)}`, s.dead_letters) : 0) },
    ], subs.subscriptions),
    Object.keys(subs.consumer_lag).length ? h("p", { class: "muted" }, "Consumer lag: ",
      Object.entries(subs.consumer_lag).map(([t, n]) => `${t} ${n}`).join(", ")) : null,
    h("h2", {}, "Sources"),
    table([
      { title: "Source", cell: (s) => link(`/ui/events?source=${encodeURIComponent(s.source)}`, s.source) },
      { title: "Accepted (indexed)", num: true, cell: (s) => s.accepted },
      { title: "Quarantined", num: true, cell: (s) => s.quarantined },
      { title: "Duplicates", num: true, cell: (s) => fixed(s.duplicates, 0) },
      { title: "Requests by outcome", cell: (s) => counts(s.requests) },
      { title: "Verification failures", cell: (s) => counts(s.verification_failures) },
    ], sources.sources));
}

async function subscriptionsView(message) {
  fill(app, h("h1", {}, "Subscriptions"), h("p", {}, "Loading…"));
  const { subscriptions } = await api("/v1/subscriptions");
  const note = h("div", {}, message || null);
  const test = (s) => h("button", { type: "button", onclick: async (ev) => {
    ev.target.disabled = true;
    try {
      const sent = await api(`/v1/subscriptions/${encodeURIComponent(s.id)}/test`, { method: "POST" });
      fill(note, h("div", { class: "notice", role: "status" }, `Test event sent to ${s.id}: `,
        link(`/ui/events/${encodeURIComponent(sent.event_id)}`, sent.event_id)));
    } catch (e) { fill(note, failure(e)); }
    ev.target.disabled = false;
  } }, "Send test webhook");
  const remove = (s) => h("button", { type: "button", onclick: async () => {
    if (!confirm(`Delete the subscription ${s.id}? Its deliveries stop.`)) return;
    try {
      await api(`/v1/subscriptions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
      subscriptionsView(h("div", { class: "notice", role: "status" }, `Deleted ${s.id}.`));
    } catch (e) { fill(note, failure(e)); }
  } }, "Delete");
  const actions = (s) => (isOperator() ? [test(s), " ", s.origin === "registry" ? remove(s) : null] : "");
  fill(app, h("h1", {}, "Subscriptions"), note, table([
    { title: "Id", cell: (s) => link(`/ui/events?subscription=${encodeURIComponent(s.id)}`, s.id) },
    { title: "Origin", cell: (s) => s.origin },
    { title: "URL", cell: (s) => h("span", { class: "mono" }, s.url) },
    { title: "Sources", cell: (s) => (s.sources || []).join(", ") || "all" },
    { title: "Event types", cell: (s) => (s.event_types || []).join(", ") || "all" },
    { title: "", cell: actions },
  ], subscriptions, (s) => ({ "data-subscription": s.id })), isOperator() ? subscriptionForm(note) : null);
}

// Adds or replaces a registered subscription (PUT): the config file's are changed there.
function subscriptionForm(note) {
  const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const form = h("form", { class: "filters" },
    h("label", {}, "Id", h("input", { name: "id", required: true })),
    h("label", {}, "URL", h("input", { name: "url", type: "url", required: true, size: 40 })),
    h("label", {}, "Sources (comma-separated; empty: all)", h("input", { name: "sources" })),
    h("label", {}, "Event types (comma-separated; empty: all)", h("input", { name: "event_types" })),
    h("button", { class: "primary", type: "submit" }, "Save"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    const body = { url: f.url };
    if (list(f.sources).length) body.sources = list(f.sources);
    if (list(f.event_types).length) body.event_types = list(f.event_types);
    try {
      const saved = await api(`/v1/subscriptions/${encodeURIComponent(f.id)}`, { method: "PUT", body });
      subscriptionsView(h("div", { class: "notice", role: "status" }, `Saved ${saved.id}.`,
        saved.secret ? [" Its signing secret, shown this once: ", h("code", {}, saved.secret)] : ""));
    } catch (e) {
      fill(note, failure(e));
    }
  });
  return h("section", { class: "panel" }, h("h2", {}, "Add or replace a registered subscription"), form);
}

function previewAction(title, fields, previewPath, actionPath, expectKey, describe) {
  const form = h("form", { class: "filters" }, fields.map(([name, label, type]) =>
    h("label", {}, label, h("input", { name, type: type || "text" }))));
  const out = h("div", {});
  const body = () => {
    const b = {};
    for (const [k, v] of new FormData(form)) if (v) b[k] = k.endsWith("_ms") ? new Date(v).getTime() : v;
    return b;
  };
  form.append(h("button", { type: "submit" }, "Preview"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const request = body();
    try {
      // An open range would take in what arrives between the preview and the action (and be
      // refused as stale): it ends now, in both.
      if (!request.to_ms) request.to_ms = Date.now();
      const p = await api(previewPath, { method: "POST", body: request });
      const count = p[expectKey === "expect_records" ? "records" : "deliveries"];
      const go = h("button", { class: "primary", type: "button", onclick: async () => {
        go.disabled = true;
        try {
          const done = await api(actionPath, { method: "POST", body: { ...request, [expectKey]: count } });
          fill(out, h("div", { class: "notice", role: "status" }, describe(done, true)));
        } catch (e) { fill(out, failure(e)); }
      } }, `Go: ${count}`);
      const over = p.more ? ` More than the limit of ${p.limit}: narrow it.` : "";
      fill(out, h("div", { class: "notice", role: "status" }, describe(p, false), over), count > 0 && !p.more ? go : null);
    } catch (e) { fill(out, failure(e)); }
  });
  return h("section", { class: "panel" }, h("h2", {}, title), form, out);
}

function replayView() {
  const deliveries = (p, done) => `${p.events} events, ${p.deliveries} deliveries` +
    (p.subscriptions.length ? ` (${p.subscriptions.map((s) => `${s.subscription} ${s.deliveries}`).join(", ")})` : "") +
    (done ? `: ${p.queued} queued.` : ".");
  fill(app, h("h1", {}, "Replay & redrive"),
    h("p", { class: "muted" }, "Each reads Kafka, shows what it will do, and does exactly that or nothing."),
    previewAction("Replay a source's time range", [["source", "Source"], ["from_ms", "Received from", "datetime-local"],
      ["to_ms", "Received before", "datetime-local"], ["event_type", "Event type"], ["subscription", "Only to subscription"]],
    "/v1/replays/preview", "/v1/replays", "expect_deliveries", deliveries),
    previewAction("Redrive dead letters", [["subscription", "Subscription"], ["source", "Source"],
      ["from_ms", "Dead from", "datetime-local"], ["to_ms", "Dead before", "datetime-local"]],
    "/v1/dead-letters/preview", "/v1/dead-letters/redrive", "expect_deliveries", deliveries),
    previewAction("Redrive quarantined records", [["source", "Source"], ["reason", "Reason"],
      ["from_ms", "Received from", "datetime-local"], ["to_ms", "Received before", "datetime-local"]],
    "/v1/quarantine/preview", "/v1/quarantine/redrive", "expect_records",
    (p, done) => `${p.records} pass the schema now, ${p.still_invalid_count} still fail, ${p.refused} refused copies left` +
      (done ? `: ${p.written} written.` : ".")));
}

async function auditView() {
  const { entries } = await api("/v1/audit");
  fill(app, h("h1", {}, "Audit log"), table([
    { title: "Time", cell: (e) => time(e.at_ms) }, { title: "Who", cell: (e) => `${e.actor} (${e.role})` },
    { title: "Action", cell: (e) => e.action }, { title: "Target", cell: (e) => h("span", { class: "mono" }, JSON.stringify(e.target)) },
    { title: "Events", num: true, cell: (e) => e.events }, { title: "Outcome", cell: (e) => badge(e.outcome) },
  ], entries));
}

// ---- routing -------------------------------------------------------------------------------

async function route() {
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", path.startsWith(a.getAttribute("href")));
  try {
    if (path.startsWith("/ui/events/")) await eventView(decodeURIComponent(path.slice("/ui/events/".length)));
    else if (path === "/ui/health") await healthView(params);
    else if (path === "/ui/subscriptions") await subscriptionsView();
    else if (path === "/ui/replay") replayView();
    else if (path === "/ui/audit") await auditView();
    else await eventsView(params);
  } catch (e) {
    fill(app, failure(e));
  }
}

async function quickFind(text) {
  for (const key of ["event_id", "dedupe_key"]) {
    const page = await api(`/v1/events?limit=2&${key}=${encodeURIComponent(text)}`).catch(() => ({ events: [] }));
    if (page.events.length === 1) return navigate(`/ui/events/${encodeURIComponent(page.events[0].event_id)}`);
    if (page.events.length > 1) return navigate(`/ui/events?${key}=${encodeURIComponent(text)}`);
  }
  fill(app, h("p", { class: "notice", role: "status" }, `No event has the id or dedupe key “${text}”.`));
}

async function start() {
  try {
    me = await api("/v1/me");
  } catch (_) {
    return; // 401: the sign-in dialog is open.
  }
  document.getElementById("who").textContent = `${me.name} · ${me.role}`;
  for (const a of document.querySelectorAll("[data-operator]")) a.hidden = !isOperator();
  api("/v1/status").then((s) => {
    document.getElementById("index-status").textContent = s.newest_event_age_ms === null ?
      "index: no event yet" : `index: newest event ${Math.round(s.newest_event_age_ms / 1000)} s old`;
  }).catch(() => {});
  route();
}

document.getElementById("zone").textContent = Intl.DateTimeFormat().resolvedOptions().timeZone;
document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-nav]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute("href"));
});
document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (ev.key === "/" && !typing) {
    ev.preventDefault();
    document.getElementById("quick-id").focus();
  }
});
document.getElementById("quick").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = document.getElementById("quick-id").value.trim();
  if (text) quickFind(text);
});
window.addEventListener("popstate", route);
start();
