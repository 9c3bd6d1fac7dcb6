// The SyncStream admin dashboard: one page, no build step. It signs in with a bearer token
// kept in this tab's session storage (no cookies: nothing another site can ride on), talks
// to /api/admin and follows admin:stats, admin:notifications and admin:activity over /ws.
// Other plugins add their tiles, user actions, content sections and activity filters with
// scripts of their own (listed by /api/admin/plugins) that call SyncStreamAdmin.extend: this
// page names no other plugin. Every value from the server is put in the page as text, never
// as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("syncstream.admin"), me: null, nodes: new Map(),
  live: [], unread: 0, view: null, ws: null, charts: [] };
const LIVE_POINTS = 180;

// -- small helpers -------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const fmt = (n, digits = 0) => (n === undefined || n === null || Number.isNaN(n) ? "–"
  : Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits }));
const bytes = (n) => { if (!n) return "0 B"; const u = ["B", "KB", "MB", "GB", "TB"]; const i = Math.min(4, Math.floor(Math.log(n) / Math.log(1024))); return `${fmt(n / 1024 ** i, i ? 1 : 0)} ${u[i]}`; };
const when = (t) => (t ? new Date(typeof t === "number" ? t * 1000 : t).toLocaleString() : "–");
const ago = (t) => { const s = Math.max(0, Date.now() / 1000 - t); return s < 60 ? `${Math.round(s)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : when(t); };

class ApiError extends Error {
  constructor(status, problem) { super(problem.detail || problem.title || `HTTP ${status}`); this.status = status; this.code = problem.code; }
}
async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401) { signOut("Your session ended: sign in again."); throw new ApiError(401, {}); }
  if (raw) { if (!resp.ok) throw new ApiError(resp.status, await resp.json()); return resp; }
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, data || {});
  return data;
}
function toast(text, kind = "") {
  const node = el("div", { class: `toast ${kind}`, role: "status" }, text);
  $("toasts").append(node);
  setTimeout(() => node.remove(), 6000);
}
async function guarded(action, done) {
  try { const result = await action(); if (done) toast(done); return result; }
  catch (err) { if (err.status !== 401) toast(`Refused: ${err.message}`, "critical"); return undefined; }
}
function ask(title, body, okLabel = "OK", danger = false) {
  const dialog = $("dialog");
  $("dialog-title").textContent = title;
  $("dialog-body").replaceChildren(...[body].flat());
  $("dialog-ok").textContent = okLabel;
  $("dialog-ok").className = danger ? "danger" : "primary";
  $("dialog-cancel").hidden = okLabel === "Close";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

// -- signing in ----------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const resp = await fetch("/api/auth/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("login-username").value, password: $("login-password").value }) });
  const data = await resp.json();
  if (!resp.ok) { $("login-error").textContent = data.detail || "Sign-in failed"; return; }
  if (data.user.role !== "admin") { $("login-error").textContent = "This account is not an admin."; return; }
  state.token = data.token;
  sessionStorage.setItem("syncstream.admin", data.token);
  await start();
}
function signOut(message = "") {
  sessionStorage.removeItem("syncstream.admin");
  state.token = null;
  if (state.ws) state.ws.close();
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}
async function start() {
  try { state.me = await api("/api/auth/me"); } catch { return; }
  if (state.me.role !== "admin") { signOut("This account is not an admin."); return; }
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = state.me.username;
  await loadExtensions();
  connect();
  await refreshUnread();
  route();
}

// -- realtime ------------------------------------------------------------------------------
function connect(delay = 500) {
  const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  let id = 0;
  ws.onopen = () => {
    for (const topic of ["admin:stats", "admin:notifications", "admin:activity"]) ws.send(JSON.stringify({ op: "subscribe", id: ++id, topic }));
    $("live").textContent = "live";
    $("live").classList.add("on");
  };
  ws.onmessage = ({ data }) => {
    const frame = JSON.parse(data);
    if (frame.op !== "event" || !frame.data) return;
    const event = frame.data;
    if (event.type === "stats") onStats(event);
    else if (event.type === "notification") onNotification(event);
    else if (event.type === "activity" && state.view?.onActivity) state.view.onActivity(event);
  };
  ws.onclose = () => {
    $("live").textContent = "offline";
    $("live").classList.remove("on");
    if (state.token && state.ws === ws) setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}
function onStats(sample) {
  state.nodes.set(sample.node, sample);
  state.live.push(sample);
  if (state.live.length > LIVE_POINTS * Math.max(1, state.nodes.size)) state.live.shift();
  if (state.view?.onStats) state.view.onStats(sample);
}
function onNotification(note) {
  state.unread += 1;
  showUnread();
  toast(note.title, note.severity === "critical" ? "critical" : "");
  if (state.view?.onNotification) state.view.onNotification(note);
}
async function refreshUnread() {
  const page = await api("/api/admin/notifications?limit=10");
  state.unread = page.unread;
  showUnread();
  return page;
}
function showUnread() {
  for (const badge of [$("unread"), $("nav-unread")]) { badge.hidden = !state.unread; badge.textContent = state.unread; }
}
function noticeItem(note) {
  return el("div", { class: `notice${note.unread ? " unread" : ""}` },
    el("div", {}, el("span", { class: `tag ${note.severity}` }, note.kind), " ", note.title),
    el("span", { class: "when" }, `${when(note.time)} · ${note.node}`));
}

// -- charts --------------------------------------------------------------------------------
function chart(target, title, series, data) {
  const width = Math.max(240, target.clientWidth || 600);
  const plot = new uPlot({ width, height: 220, title,
    series: [{}, ...series.map((s, i) => ({ label: s, stroke: ["#3563e9", "#1a9e5c", "#d98b05", "#d13b3b", "#7a4de0"][i % 5], width: 2 }))],
    axes: [{}, { size: 60 }], scales: { x: { time: true } }, legend: { live: false } }, data, target);
  state.charts.push(plot);
  return plot;
}
function columns(rows, keys) {
  return [rows.map((r) => r.time), ...keys.map((k) => rows.map((r) => (r[k] === undefined ? null : r[k])))];
}

// -- what plugins add -----------------------------------------------------------------------
// A plugin's dashboard script calls SyncStreamAdmin.extend({...}) with any of:
//   tiles: [[label, () => value, () => note?]]            on the overview (see sum / most)
//   userActions: ({ user, facts, act, load }) => ({ actions: [buttons], ends: [buttons] })
//   sections: [{ title, head: [column titles], wide, fill: async (tbody, { endButton, none }) }]
//   activity: ["prefix."]                                  suggestions in the activity filter
const extensions = { tiles: [], userActions: [], sections: [], activity: [] };
const sum = (key) => [...state.nodes.values()].reduce((total, s) => total + (s[key] || 0), 0);
const most = (key) => Math.max(0, ...[...state.nodes.values()].map((s) => s[key] || 0));
window.SyncStreamAdmin = {
  el, api, ask, toast, guarded, fmt, bytes, when, sum, most,
  extend({ tiles = [], userActions, sections = [], activity = [] }) {
    extensions.tiles.push(...tiles);
    if (userActions) extensions.userActions.push(userActions);
    extensions.sections.push(...sections);
    extensions.activity.push(...activity);
  },
};
async function loadExtensions() {
  const listing = await guarded(() => api("/api/admin/plugins"));
  state.plugins = listing ? listing.plugins : [];
  await Promise.all(state.plugins.filter((p) => p.script).map((p) => new Promise((resolve) => {
    const script = el("script", { src: p.script });
    script.async = false; // run in the listed order, so tiles come in the same order each time
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => { toast(`The ${p.name} plugin's dashboard script did not load`, "critical"); resolve(); });
    document.body.append(script);
  })));
}

// -- views ---------------------------------------------------------------------------------
const TILES = () => [
  ["Live streams", () => fmt(sum("live.streams"))], ["Viewers", () => fmt(sum("live.viewers"))],
  ["Ingest", () => fmt(sum("live.ingest_kbps") / 1000, 1), () => "Mbit/s"], ["WebSockets", () => fmt(sum("ws_connections"))],
  ["Messages / s", () => fmt(sum("messages_out_per_s"))], ...extensions.tiles,
  ["Errors / s", () => fmt(sum("errors_per_s"), 2)], ["Nodes", () => fmt(state.nodes.size)],
];

function overview() {
  const tiles = el("section", { class: "tiles", id: "tiles" });
  const nodes = el("tbody");
  const liveChart = el("div", { class: "chart" });
  const loadChart = el("div", { class: "chart" });
  const historyChart = el("div", { class: "chart" });
  const rangeSelect = el("select", { "aria-label": "history range" }, ["1h", "24h", "7d"].map((r) => el("option", { value: r }, r)));
  rangeSelect.value = "24h";
  let live = null; let load = null;
  function paint() {
    tiles.replaceChildren(...TILES().map(([label, value, note]) => el("div", { class: "tile" }, el("div", { class: "label" }, label),
      el("div", { class: "value" }, value()), note ? el("div", { class: "note" }, note()) : null)));
    nodes.replaceChildren(...[...state.nodes.values()].map((s) => el("tr", {},
      el("td", {}, s.node), el("td", {}, `${fmt(s.cpu_percent, 1)} %`), el("td", {}, `${fmt(s.memory_mb)} MB`),
      el("td", {}, `${fmt(s.loop_lag_ms, 1)} ms`), el("td", {}, `${fmt(s.disk_free_percent, 1)} %`), el("td", {}, ago(s.time)))));
  }
  function liveData() {
    const rows = state.live.filter((s) => s.node === (state.live.at(-1) || {}).node);
    return { traffic: columns(rows, ["messages_out_per_s", "ws_connections"]), load: columns(rows, ["cpu_percent", "loop_lag_ms"]) };
  }
  async function loadHistory() {
    const data = await api(`/api/admin/stats/history?range=${rangeSelect.value}`);
    historyChart.replaceChildren();
    if (!data.rows.length) { historyChart.append(el("p", { class: "muted" }, "No history yet: a row is kept each minute.")); return; }
    chart(historyChart, `CPU %, memory MB and WebSockets (${data.range}, every ${data.resolution_seconds / 60} min)`,
      ["CPU %", "Memory MB", "WebSockets"], columns(data.rows, ["cpu_percent", "memory_mb", "ws_connections"]));
  }
  rangeSelect.addEventListener("change", loadHistory);
  paint();
  return {
    title: "Overview",
    nodes: [tiles,
      el("section", { class: "grid2" },
        el("div", { class: "card" }, el("h2", {}, "Traffic (live)"), liveChart),
        el("div", { class: "card" }, el("h2", {}, "Load (live)"), loadChart)),
      el("section", { class: "card" }, el("h2", {}, "History", el("span", { class: "spacer" }), rangeSelect), historyChart),
      el("section", { class: "card" }, el("h2", {}, "Nodes"), el("table", {},
        el("thead", {}, el("tr", {}, ["Node", "CPU", "Memory", "Loop lag", "Disk free", "Seen"].map((h) => el("th", {}, h)))), nodes))],
    mounted() {
      const data = liveData();
      live = chart(liveChart, "Messages/s and WebSockets", ["Messages/s", "WebSockets"], data.traffic);
      load = chart(loadChart, "CPU % and event-loop lag (ms)", ["CPU %", "Loop lag ms"], data.load);
      loadHistory();
    },
    onStats() { paint(); const data = liveData(); live?.setData(data.traffic); load?.setData(data.load); },
  };
}

function users() {
  const q = { search: "", role: "", banned: "", sort: "username", order: "asc", limit: 25, offset: 0 };
  const body = el("tbody");
  const total = el("span", { class: "muted" });
  const pageLabel = el("span");
  const search = el("input", { type: "search", placeholder: "Search users…", "aria-label": "search users" });
  const role = el("select", { "aria-label": "role" }, el("option", { value: "" }, "Any role"), el("option", { value: "admin" }, "Admins"), el("option", { value: "user" }, "Users"));
  const banned = el("select", { "aria-label": "ban state" }, el("option", { value: "" }, "Any state"), el("option", { value: "true" }, "Banned"), el("option", { value: "false" }, "Not banned"));
  const size = el("select", { "aria-label": "page size" }, [10, 25, 50, 100].map((n) => el("option", { value: n }, `${n} a page`)));
  size.value = "25";
  const headers = [["username", "User"], [null, "Role"], [null, "State"], ["created_at", "Joined"], ["last_seen", "Last seen"], [null, "Sessions"]];
  const head = el("tr", {}, headers.map(([key, label]) => el("th", { class: key ? "sortable" : "", "data-sort": key || undefined,
    onclick: key ? () => { q.order = q.sort === key && q.order === "asc" ? "desc" : "asc"; q.sort = key; load(); } : undefined }, label)));
  async function load() {
    const params = new URLSearchParams(Object.entries(q).filter(([, v]) => v !== ""));
    const page = await guarded(() => api(`/api/admin/users?${params}`));
    if (!page) return;
    for (const th of head.children) { th.classList.toggle("sorted", th.dataset.sort === q.sort); th.classList.toggle("desc", th.dataset.sort === q.sort && q.order === "desc"); }
    body.replaceChildren(...page.users.map((u) => el("tr", { class: "clickable", "data-user": u.username, onclick: () => { location.hash = `#/users/${u.id}`; } },
      el("td", {}, el("strong", {}, u.username)), el("td", {}, el("span", { class: `tag ${u.role}` }, u.role)),
      el("td", {}, u.banned ? el("span", { class: "tag banned" }, "banned") : "active"),
      el("td", {}, when(u.created_at)), el("td", {}, when(u.last_seen_at)), el("td", {}, u.sessions))));
    total.textContent = `${fmt(page.total)} users`;
    const pages = Math.max(1, Math.ceil(page.total / q.limit));
    pageLabel.textContent = `Page ${Math.floor(q.offset / q.limit) + 1} of ${pages}`;
    prev.disabled = q.offset === 0;
    next.disabled = q.offset + q.limit >= page.total;
  }
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { q.search = search.value; q.offset = 0; load(); }, 250); });
  role.addEventListener("change", () => { q.role = role.value; q.offset = 0; load(); });
  banned.addEventListener("change", () => { q.banned = banned.value; q.offset = 0; load(); });
  size.addEventListener("change", () => { q.limit = Number(size.value); q.offset = 0; load(); });
  const prev = el("button", { type: "button", onclick: () => { q.offset = Math.max(0, q.offset - q.limit); load(); } }, "Previous");
  const next = el("button", { type: "button", onclick: () => { q.offset += q.limit; load(); } }, "Next");
  return {
    title: "Users",
    nodes: [el("section", { class: "card" },
      el("div", { class: "toolbar" }, search, role, banned, el("span", { class: "spacer" }), total),
      el("table", { id: "users-table" }, el("thead", {}, head), body),
      el("div", { class: "pager" }, size, prev, pageLabel, next))],
    mounted: load,
  };
}

function factsCard(name, facts) {
  const rows = Object.entries(facts).map(([key, value]) => [el("dt", {}, key.replaceAll("_", " ")),
    el("dd", {}, Array.isArray(value) ? (value.join(", ") || "–")
      : typeof value === "object" && value !== null ? (Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", ") || "none")
      : key === "bytes" ? bytes(value) : String(value ?? "–"))]);
  return el("div", { class: "card" }, el("h2", {}, name), el("dl", {}, rows.flat()));
}

function userView(userId) {
  const container = el("div", { class: "view-stack" });
  async function load() {
    const data = await guarded(() => api(`/api/admin/users/${userId}`));
    if (!data) return;
    const { user } = data;
    const act = (label, fn, danger = false) => el("button", { type: "button", class: danger ? "danger" : "", onclick: fn }, label);
    const roleSelect = el("select", { "aria-label": "role" }, el("option", { value: "user" }, "user"), el("option", { value: "admin" }, "admin"));
    roleSelect.value = user.role;
    roleSelect.addEventListener("change", async () => {
      await guarded(() => api(`/api/users/${user.id}`, { method: "PATCH", body: { role: roleSelect.value } }), `${user.username} is now ${roleSelect.value}`);
      load();
    });
    const actions = el("div", { class: "actions" },
      user.banned
        ? act("Unban", async () => { await guarded(() => api(`/api/users/${user.id}`, { method: "PATCH", body: { banned: false } }), `${user.username} unbanned`); load(); })
        : act("Ban", async () => {
          if (!(await ask(`Ban ${user.username}?`, "Their sessions, live streams and calls end at once.", "Ban", true))) return;
          await guarded(() => api(`/api/users/${user.id}`, { method: "PATCH", body: { banned: true } }), `${user.username} banned`);
          load();
        }, true),
      act("Reset password", async () => {
        if (!(await ask(`Reset ${user.username}'s password?`, "A new password is made and every session ends.", "Reset", true))) return;
        const result = await guarded(() => api(`/api/admin/users/${user.id}/password`, { method: "POST" }));
        if (result) await ask("New password", [el("p", {}, "Give it to the user; it is not shown again."), el("code", { class: "secret" }, result.password)], "Close");
      }),
      act("Revoke sessions", async () => {
        const result = await guarded(() => api(`/api/admin/users/${user.id}/revoke-tokens`, { method: "POST" }));
        if (result) toast(`${result.revoked} sessions revoked`);
        load();
      }),
      act("Rotate stream key", async () => {
        const result = await guarded(() => api(`/api/admin/users/${user.id}/stream-key`, { method: "POST", body: {} }));
        if (result) await ask(`New key for stream ${result.stream}`, [el("p", {}, "The old key no longer publishes."), el("code", { class: "secret" }, result.key)], "Close");
      }));
    const ends = [];
    for (const contribute of extensions.userActions) {
      const added = contribute({ user, facts: data.facts, act, load });
      actions.append(...(added.actions || []));
      ends.push(...(added.ends || []));
    }
    for (const stream of data.facts.live?.live_now || []) {
      ends.push(act(`End stream ${stream}`, async () => { await guarded(() => api(`/api/live/streams/${encodeURIComponent(stream)}`, { method: "DELETE" }), "Stream ended"); load(); }, true));
    }
    container.replaceChildren(
      el("section", { class: "card" },
        el("h2", {}, user.username, el("span", { class: `tag ${user.role}` }, user.role), user.banned ? el("span", { class: "tag banned", id: "banned-tag" }, "banned") : null,
          el("span", { class: "spacer" }), el("label", { class: "muted" }, "Role ", roleSelect)),
        el("p", { class: "muted" }, `Joined ${when(user.created_at)} · id ${user.id}`), actions,
        ends.length ? el("div", { class: "actions" }, ends) : null),
      el("section", { class: "facts" }, Object.entries(data.facts).map(([name, facts]) => factsCard(name, facts))),
      el("section", { class: "stack" },
        el("div", { class: "card" }, el("h2", {}, "Sessions"), el("table", {},
          el("thead", {}, el("tr", {}, ["Signed in", "Last used", "From"].map((h) => el("th", {}, h)))),
          el("tbody", {}, data.sessions.map((s) => el("tr", {}, el("td", {}, when(s.created_at)), el("td", {}, when(s.last_used_at)),
            el("td", {}, `${s.ip || "?"} · ${(s.user_agent || "").slice(0, 40)}`)))))),
        el("div", { class: "card" }, el("h2", {}, "Recent activity"), activityTable(data.activity))));
  }
  return { title: "User", nodes: [container], mounted: load };
}

function activityTable(rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ["When", "Action", "By", "Target", "From", "Details"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map(activityRow)));
}
function activityRow(r) {
  const short = (id) => (id && id.length > 16 ? `${id.slice(0, 8)}…` : id || "");
  return el("tr", {}, el("td", {}, when(r.time)), el("td", {}, el("span", { class: "tag" }, r.action)),
    el("td", { title: r.actor_id || "" }, r.actor || short(r.actor_id) || "system"),
    el("td", { title: r.target || "" }, r.target_user || short(r.target)), el("td", {}, r.ip || ""),
    el("td", { class: "muted details" }, JSON.stringify(r.data || {}).slice(0, 120)));
}

function activity() {
  const user = el("input", { placeholder: "username", "aria-label": "user" });
  const action = el("input", { placeholder: "action or prefix (auth.)", list: "actions", "aria-label": "action" });
  const since = el("input", { type: "datetime-local", "aria-label": "since" });
  const until = el("input", { type: "datetime-local", "aria-label": "until" });
  const body = el("tbody");
  const more = el("button", { type: "button", hidden: true }, "Load more");
  let next = null;
  const filters = () => {
    const params = new URLSearchParams();
    if (user.value) params.set("user", user.value);
    if (action.value) params.set("action", action.value);
    if (since.value) params.set("since", new Date(since.value).toISOString());
    if (until.value) params.set("until", new Date(until.value).toISOString());
    return params;
  };
  async function load(append = false) {
    const params = filters();
    params.set("limit", "50");
    if (append && next) params.set("before", next);
    const page = await guarded(() => api(`/api/admin/activity?${params}`));
    if (!page) return;
    if (!append) body.replaceChildren();
    body.append(...page.activity.map(activityRow));
    next = page.next;
    more.hidden = !next;
  }
  async function exportAs(format) {
    const params = filters();
    params.set("format", format);
    const resp = await guarded(() => api(`/api/admin/activity/export?${params}`, { raw: true }));
    if (!resp) return;
    const link = el("a", { href: URL.createObjectURL(await resp.blob()), download: `activity.${format}` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }
  more.addEventListener("click", () => load(true));
  const apply = el("button", { type: "button", class: "primary", onclick: () => load() }, "Apply");
  const datalist = el("datalist", { id: "actions" }, ["auth.", "auth.login_failed", "user.", "stream.", ...extensions.activity, "admin."].map((a) => el("option", { value: a })));
  return {
    title: "Activity",
    nodes: [el("section", { class: "card" },
      el("div", { class: "toolbar" }, user, action, datalist, since, until, apply, el("span", { class: "spacer" }),
        el("button", { type: "button", onclick: () => exportAs("csv") }, "Export CSV"), el("button", { type: "button", onclick: () => exportAs("ndjson") }, "Export NDJSON")),
      el("table", {}, el("thead", {}, el("tr", {}, ["When", "Action", "By", "Target", "From", "Details"].map((h) => el("th", {}, h)))), body), more)],
    mounted: () => load(),
    onActivity(record) { if (!user.value && !action.value && !since.value && !until.value) body.prepend(activityRow(record)); },
  };
}

// A stream's video: size and codec, and a warning tag when it has B-frames (browsers' WebRTC
// cannot play them: its WebRTC viewers get a re-encode, which costs the server CPU).
function videoCell(video) {
  if (!video) return "–";
  const size = video.width ? `${video.width}×${video.height} ` : "";
  return el("span", {}, `${size}${video.codec} `, video.bframes
    ? el("span", { class: "tag warning", title: "WebRTC viewers get a re-encode without B-frames; set bframes=0 in OBS for passthrough" }, "B-frames")
    : "");
}

function content() {
  const streams = el("tbody");
  const endButton = (label, what, path) => el("button", { type: "button", class: "danger", onclick: async () => {
    if (!(await ask(`${label}?`, `${what} ends for everyone at once.`, label, true))) return;
    await guarded(() => api(path, { method: "POST" }), `${what} ended`);
    load();
  } }, label);
  const none = (text, colspan = 6) => [el("tr", {}, el("td", { colspan, class: "muted" }, text))];
  const sections = extensions.sections.map((section) => ({ ...section, body: el("tbody") }));
  const card = (section) => el(section.wide ? "section" : "div", { class: "card" }, el("h2", {}, section.title), el("table", {},
    el("thead", {}, el("tr", {}, section.head.map((h) => el("th", {}, h)))), section.body));
  async function load() {
    const live = await guarded(() => api("/api/live/streams"));
    if (live) {
      streams.replaceChildren(...(live.streams.length ? live.streams.map((s) => el("tr", { "data-stream": s.name },
        el("td", {}, el("strong", {}, s.name)), el("td", {}, s.owner.username), el("td", {}, videoCell(s.video)), el("td", {}, `${fmt(s.bitrate_kbps)} kbit/s`),
        el("td", {}, fmt(s.viewers.total)), el("td", {}, `${fmt(s.uptime_seconds / 60, 1)} min`),
        el("td", {}, el("button", { type: "button", class: "danger", onclick: async () => {
          if (!(await ask(`End ${s.name}?`, "The broadcaster is disconnected.", "End stream", true))) return;
          await guarded(() => api(`/api/live/streams/${encodeURIComponent(s.name)}`, { method: "DELETE" }), `${s.name} ended`);
          load();
        } }, "End")))) : none("Nobody is live.", 7)));
    }
    await Promise.all(sections.map((section) => section.fill(section.body, { endButton, none, load })));
  }
  const narrow = sections.filter((section) => !section.wide);
  return {
    title: "Content",
    nodes: [
      el("section", { class: "card" }, el("h2", {}, "Live streams"), el("table", {},
        el("thead", {}, el("tr", {}, ["Stream", "Owner", "Video", "Bitrate", "Viewers", "Uptime", ""].map((h) => el("th", {}, h)))), streams)),
      ...sections.filter((section) => section.wide).map(card),
      narrow.length ? el("section", { class: "grid2" }, narrow.map(card)) : null].filter(Boolean),
    mounted: load,
  };
}

// Every plugin's state: a failed one says at which stage and why (the rest of the node runs).
function plugins() {
  const body = el("tbody");
  async function load() {
    const listing = await guarded(() => api("/api/admin/plugins"));
    if (!listing) return;
    body.replaceChildren(...listing.plugins.map((p) => el("tr", { "data-plugin": p.name },
      el("td", {}, el("strong", {}, p.name)), el("td", {}, p.version),
      el("td", {}, el("span", { class: `tag ${p.state === "failed" ? "critical" : p.state}` }, p.state), p.required ? " required" : ""),
      el("td", { class: "details" }, p.state === "failed" ? `failed to ${p.stage}: ${p.reason}` : p.description))));
  }
  return {
    title: "Plugins",
    nodes: [el("section", { class: "card" }, el("table", { id: "plugins-table" },
      el("thead", {}, el("tr", {}, ["Plugin", "Version", "State", ""].map((h) => el("th", {}, h)))), body))],
    mounted: load,
  };
}

function notifications() {
  const list = el("div", { id: "notifications" });
  async function load() {
    const page = await refreshUnread();
    list.replaceChildren(...(page.notifications.length ? page.notifications.map(noticeItem) : [el("p", { class: "muted" }, "Nothing yet.")]));
  }
  const markRead = el("button", { type: "button", onclick: async () => { await guarded(() => api("/api/admin/notifications/read", { method: "POST", body: {} })); load(); } }, "Mark all read");
  return {
    title: "Notifications",
    nodes: [el("section", { class: "card" }, el("h2", {}, "Notifications", el("span", { class: "spacer" }), markRead), list)],
    mounted: load,
    onNotification(note) { list.prepend(noticeItem({ ...note, unread: true })); },
  };
}

// -- routing -------------------------------------------------------------------------------
function route() {
  if (!state.token || $("app").hidden) return;
  const [, name = "overview", arg] = location.hash.replace(/^#/, "").split("/");
  const views = { overview, users, activity, content, plugins, notifications };
  const view = name === "users" && arg ? userView(arg) : (views[name] || overview)();
  state.charts.forEach((c) => c.destroy());
  state.charts = [];
  state.view = view;
  $("title").textContent = view.title;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === name);
  $("view").replaceChildren(...view.nodes);
  if (view.mounted) view.mounted();
}

window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { for (const c of state.charts) c.setSize({ width: Math.max(240, c.root.parentElement.clientWidth), height: 220 }); });
$("login-form").addEventListener("submit", (event) => { signIn(event).catch((err) => { $("login-error").textContent = String(err); }); });
$("logout").addEventListener("click", async () => { await fetch("/api/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${state.token}` } }); signOut(); });
$("bell").addEventListener("click", async () => {
  const menu = $("bell-menu");
  menu.hidden = !menu.hidden;
  if (menu.hidden) return;
  const page = await refreshUnread();
  menu.replaceChildren(...page.notifications.map(noticeItem), el("div", { class: "notice" },
    el("a", { href: "#/notifications", onclick: () => { menu.hidden = true; } }, "All notifications")));
});
if (state.token) start(); else $("login").hidden = false;
