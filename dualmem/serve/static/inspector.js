"use strict";
// The dualmem inspector: one page over the REST API (/v1). Every node is built with DOM calls
// and textContent, never HTML from data, so stored text cannot inject markup; the API key
// (when the server wants one) lives in sessionStorage and goes in a header, never a cookie.

const $ = (selector) => document.querySelector(selector);
const state = { scope: null, turns: new Map(), key: sessionStorage.getItem("dualmem-key") || "", run: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

async function api(method, path, { query = {}, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = {};
  if (state.key) headers.Authorization = "Bearer " + state.key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) $("#key-form").hidden = false;
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch { /* not JSON: keep the status text */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return (response.headers.get("content-type") || "").includes("json") ? response.json() : response.blob();
}

function status(text, kind = "info") {
  $("#status").textContent = text;
  $("#status").dataset.kind = kind;
}

async function guarded(what, work) {
  status(what + "…");
  try {
    await work();
    status("");
  } catch (error) {
    status(`${what} failed: ${error.message}`, "error");
  }
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
const day = (iso) => (iso ? new Date(iso).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" }) : "");
const clock = (iso) => new Date(iso).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", timeZone: "UTC" });

function meter(score, threshold, verdict) {
  const bar = el("span", { class: `meter verdict-${verdict}`, title: `score ${fmt(score)}, threshold ${fmt(threshold)}` });
  const fill = el("span", { class: "fill" });
  fill.style.width = `${Math.max(0, Math.min(1, score ?? 0)) * 100}%`;
  bar.append(fill);
  if (threshold !== null && threshold !== undefined) {
    const mark = el("span", { class: "threshold" });
    mark.style.left = `calc(${Math.max(0, Math.min(1, threshold)) * 100}% - 1px)`;
    bar.append(mark);
  }
  return bar;
}

// ---------------------------------------------------------------- scope

const scopeQuery = () => ({ ...state.scope });
const scopeLabel = (s) => Object.entries(s).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k.replace("_id", "")} ${v}`).join(" · ");

async function loadScopes() {
  const scopes = await api("GET", "/v1/scopes");
  const seen = new Map();
  for (const s of scopes) {
    const whole = s.user_id !== null || s.agent_id !== null ? { user_id: s.user_id, agent_id: s.agent_id, session_id: null } : s;
    seen.set(JSON.stringify(whole), whole);
  }
  for (const s of scopes) seen.set(JSON.stringify(s), s);
  const pick = $("#scope-pick");
  pick.replaceChildren(el("option", { value: "" }, "pick a scope…"));
  for (const [value, s] of [...seen].sort(([a], [b]) => a.localeCompare(b))) {
    pick.append(el("option", { value }, s.session_id === null ? `${scopeLabel(s)} (all sessions)` : scopeLabel(s)));
  }
}

function clean(scope) {
  const out = {};
  for (const name of ["user_id", "agent_id", "session_id"]) {
    const value = scope[name];
    out[name] = value === undefined || value === "" ? null : value;
  }
  return out;
}

async function openScope(scope) {
  state.scope = clean(scope);
  $("#user-id").value = state.scope.user_id ?? "";
  $("#agent-id").value = state.scope.agent_id ?? "";
  $("#session-id").value = state.scope.session_id ?? "";
  $("#scope-pick").value = JSON.stringify(state.scope);
  $("#trace").replaceChildren();
  await guarded(`opening ${scopeLabel(state.scope)}`, async () => {
    // history first: a memory's chip names its source turn from the loaded history
    await loadHistory();
    await loadMemories();
  });
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const asked = state.scope;
  const turns = await api("GET", "/v1/turns", { query: scopeQuery() });
  if (state.scope !== asked) return; // another scope was opened meanwhile: its load draws
  state.turns = new Map(turns.map((t) => [t.id, t]));
  const sessions = new Map();
  for (const t of turns) {
    const key = t.session_id ?? "(no session)";
    if (!sessions.has(key)) sessions.set(key, []);
    sessions.get(key).push(t);
  }
  const box = $("#history");
  box.replaceChildren();
  for (const [session, list] of sessions) {
    const first = day(list[0].timestamp), last = day(list.at(-1).timestamp);
    box.append(el("details", { class: "session", open: true, dataset: { session } },
      el("summary", {}, `Session ${session} `, el("time", { datetime: list[0].timestamp }, first === last ? first : `${first} – ${last}`),
        el("span", { class: "count" }, ` · ${list.length} turns`)),
      el("ol", { class: "turns" }, list.map((t) => el("li", { class: `turn role-${t.role}`, dataset: { turnId: t.id } },
        el("time", { datetime: t.timestamp, title: t.timestamp }, clock(t.timestamp)),
        el("span", { class: "speaker" }, t.speaker || t.role),
        el("span", { class: "text" }, t.text))))));
  }
  if (!turns.length) box.append(el("p", { class: "empty" }, "No turns stored for this scope."));
  $("#history-count").textContent = `${turns.length} turns in ${sessions.size} session(s)`;
}

function turnNode(id) {
  return $(`#history [data-turn-id="${CSS.escape(id)}"]`);
}

function focusTurn(id) {
  const node = turnNode(id);
  if (!node) return status(`turn ${id} is not in this scope's history view`, "error");
  node.closest("details").open = true;
  node.scrollIntoView({ block: "center" });
  node.classList.add("focus");
  setTimeout(() => node.classList.remove("focus"), 1500);
}

function turnChip(id) {
  const t = state.turns.get(id);
  const label = t ? `${t.session_id ?? ""} · ${day(t.timestamp)} · ${t.speaker || t.role}` : id.slice(0, 12);
  return el("button", { type: "button", class: "chip", title: `turn ${id}`, onclick: () => focusTurn(id) }, label);
}

// ---------------------------------------------------------------- memories and search

function memoryItem(m) {
  const date = m.event_date || day(m.created_at);
  return el("li", { class: "memory", dataset: { memoryId: m.id } },
    el("div", { class: "memory-text" }, m.text),
    el("div", { class: "meta" },
      m.score !== null && m.score !== undefined ? el("span", { class: "score" }, meter(m.score, null, "pass"), fmt(m.score)) : null,
      el("span", {}, `dated ${date}`),
      m.metadata?.valid_to ? el("span", {}, `until ${day(m.metadata.valid_to)}`) : null,
      el("span", {}, "from"), m.source_turn_ids.map(turnChip)));
}

function showMemories(memories, what) {
  fill($("#memories"), memories.map(memoryItem));
  if (!memories.length) $("#memories").append(el("p", { class: "empty" }, "No memories."));
  $("#memories-count").textContent = `${memories.length} ${what}`;
}

async function loadMemories() {
  const asked = state.scope;
  const memories = await api("GET", "/v1/memories", { query: scopeQuery() });
  if (state.scope === asked) showMemories(memories, "stored");
}

async function search(query) {
  showMemories(await api("POST", "/v1/search", { query: scopeQuery(), body: { query } }), `found for “${query}”`);
}

// ---------------------------------------------------------------- the trace

function signalRow(s) {
  const verdict = !s.available ? "unavailable" : s.passed ? "pass" : "fail";
  return el("li", { class: `signal verdict-${verdict}`, dataset: { signal: s.name } },
    el("span", { class: "signal-name" }, s.name),
    meter(s.score, s.threshold, verdict),
    el("span", { class: "signal-value" }, `${fmt(s.score)} / ${fmt(s.threshold)}`),
    el("span", { class: "verdict" }, verdict === "fail" ? "FAIL" : verdict),
    el("span", { class: "signal-reason" }, s.reason));
}

function gateSection(gate) {
  if (!gate) return null;
  const audit = gate.audit && el("p", {}, "audit: ",
    ["relevance", "faithfulness", "completeness"].map((n) => `${n} ${gate.audit[n] ? "pass" : "fail"}`).join(", "),
    gate.audit.malformed ? " (no readable verdict)" : "");
  return el("section", { class: "gate" },
    el("h4", {}, `Gate · ${gate.policy} · score ${fmt(gate.score)} → `,
      el("span", { class: `badge ${gate.escalate ? "escalate" : "pass"}` }, gate.escalate ? "escalate" : "pass")),
    el("ul", { class: "signals" }, gate.signals.map(signalRow)), audit);
}

function candidatesSection(a) {
  if (!a.candidates.length) return null;
  return el("section", { class: "candidates" }, el("h4", {}, `System 2 (${a.strategy}): the answers weighed`),
    el("table", {}, el("tr", {}, ["source", "answer", "support", "newest line"].map((h) => el("th", {}, h))),
      a.candidates.map((c) => el("tr", { class: c.won ? "won" : "" },
        el("td", {}, c.source + (c.won ? " ✓" : "")), el("td", {}, c.text),
        el("td", { class: "num" }, fmt(c.support)), el("td", {}, day(c.newest))))),
    el("p", { class: "reason" }, a.arbitration));
}

function costSection(a) {
  const phases = [...new Set([...Object.keys(a.latency), ...Object.keys(a.usage)])];  // in the order they ran
  const total = { prompt: 0, completion: 0, calls: 0, seconds: 0 };
  const rows = phases.map((phase) => {
    const u = a.usage[phase] || { prompt_tokens: 0, completion_tokens: 0, calls: 0 };
    const seconds = a.latency[phase] ?? 0;
    total.prompt += u.prompt_tokens; total.completion += u.completion_tokens; total.calls += u.calls; total.seconds += seconds;
    return el("tr", { dataset: { phase } }, el("td", {}, phase), el("td", { class: "num" }, u.prompt_tokens),
      el("td", { class: "num" }, u.completion_tokens), el("td", { class: "num" }, u.calls), el("td", { class: "num" }, `${fmt(seconds)} s`));
  });
  return el("section", { class: "cost" }, el("h4", {}, "Tokens and latency per phase"),
    el("table", {}, el("tr", {}, ["phase", "prompt", "completion", "calls", "latency"].map((h) => el("th", { class: h === "phase" ? "" : "num" }, h))),
      rows, el("tr", { class: "total" }, el("th", {}, "total"), el("th", { class: "num" }, total.prompt),
        el("th", { class: "num" }, total.completion), el("th", { class: "num" }, total.calls), el("th", { class: "num" }, `${fmt(total.seconds)} s`))));
}

function evidenceSection(a) {
  const ids = a.evidence.turn_ids.filter((id) => state.turns.has(id));
  const lines = ids.map((id) => state.turns.get(id)).sort((x, y) => x.timestamp.localeCompare(y.timestamp));
  const facts = a.evidence.facts.length && el("ul", {}, a.evidence.facts.map((f) => el("li", {}, `[${f.score}] ${f.text}`)));
  return el("section", { class: "evidence" },
    el("h4", {}, `Evidence: ${ids.length} turn(s), highlighted in the history`),
    el("ol", { class: "evidence-lines" }, lines.map((t) => el("li", { onclick: () => focusTurn(t.id), dataset: { turnId: t.id } },
      el("time", {}, `${day(t.timestamp)} `), el("b", {}, `${t.speaker || t.role}: `), t.text))), facts);
}

// the evidence turns in the history; the memories the fast answer read, in the memory list
function highlight(a) {
  for (const node of document.querySelectorAll("#history .evidence, #memories .retrieved")) {
    node.classList.remove("evidence", "retrieved");
  }
  for (const id of a.evidence.turn_ids) turnNode(id)?.classList.add("evidence");
  for (const id of a.evidence.memory_ids) $(`#memories [data-memory-id="${CSS.escape(id)}"]`)?.classList.add("retrieved");
  const first = a.evidence.turn_ids.map(turnNode).find(Boolean);
  if (first) first.scrollIntoView({ block: "nearest" });
}

function renderTrace(a) {
  fill($("#trace"), el("article", { class: "trace", dataset: { path: a.path } },
    el("header", {},
      el("span", { class: `badge path path-${a.path}` }, a.path === "fast" ? "fast path (System 1)" : "deliberate (System 2)"),
      a.tier ? el("span", { class: "badge tier" }, `tier: ${a.tier}`) : null,
      el("span", { class: "badge" }, `mode: ${a.mode}`),
      a.degraded ? el("span", { class: "badge escalate" }, "degraded") : null),
    el("p", { class: "answer-text" }, a.text),
    el("p", { class: "reason" }, a.reason),
    gateSection(a.gate), candidatesSection(a), costSection(a), evidenceSection(a)));
  highlight(a);
}

async function ask(question) {
  const body = { question, mode: $("#mode").value };
  for (const name of ["policy", "strategy"]) if ($(`#${name}`).value) body[name] = $(`#${name}`).value;
  renderTrace(await api("POST", "/v1/answer", { query: scopeQuery(), body }));
}

// ---------------------------------------------------------------- benchmark runs

function fillFilter(name, values, label) {
  const select = $(`[data-filter="${name}"]`);
  const keep = select.value;
  fill(select, el("option", { value: "" }, "any"), values.map((v) => el("option", { value: Array.isArray(v) ? v[0] : v }, label(v))));
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
}

async function loadRun() {
  const name = $("#run-pick").value;
  if (!name) return;
  const query = { limit: 2000 };
  for (const select of document.querySelectorAll("[data-filter]")) query[select.dataset.filter] = state.run === name ? select.value : "";
  const view = await api("GET", `/v1/runs/${encodeURIComponent(name)}`, { query });
  if (state.run !== name) showPlots(name, view.plots);
  state.run = name;
  fillFilter("system", view.facets.system, (v) => v);
  fillFilter("path", view.facets.path, (v) => v);
  fillFilter("category", view.facets.category, ([n, label]) => `${n} ${label}`);
  fillFilter("outcome", view.facets.outcome, (v) => v);
  const counts = Object.entries(view.counts).map(([o, n]) => `${n} ${o}`).join(", ");
  $("#run-summary").textContent = `${view.shown} of ${view.total} records${view.unreadable ? ` (${view.unreadable} unreadable lines)` : ""}` +
    (counts ? ` · escalations: ${counts}` : "");
  const header = el("tr", {}, ["system", "question", "category", "gold", "prediction", "F1", "path", "escalation"].map((h) => el("th", {}, h)));
  fill($("#run-table"), header, view.rows.map(runRow));
  $("#run-detail").replaceChildren(el("p", { class: "empty" }, "Click a row to see its trace."));
}

function runRow(row) {
  const r = row.record;
  const tr = el("tr", { class: `row ${row.correct === null ? "" : row.correct ? "right" : "wrong"}`, dataset: { index: row.index } },
    el("td", {}, r.system), el("td", { title: `${r.conversation} q${r.q}` }, r.question), el("td", {}, r.category_name),
    el("td", {}, r.gold ?? ""), el("td", {}, r.prediction ?? r.error ?? r.skipped ?? ""),
    el("td", { class: "num f1" }, fmt(r.f1)), el("td", {}, r.path ? r.path + (r.tier ? ` (${r.tier})` : "") : ""),
    el("td", {}, row.outcome ? el("span", { class: `outcome outcome-${row.outcome.replace(" ", "-")}` }, row.outcome) : ""));
  tr.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#run-table tr.selected")) other.classList.remove("selected");
    tr.classList.add("selected");
    showRecord(row);
  });
  return tr;
}

function showRecord(row) {
  const r = row.record;
  const signals = Object.entries(r.gate_signals || {}).map(([name, score]) => el("li", { class: `signal verdict-${score === null ? "unavailable" : "pass"}` },
    el("span", { class: "signal-name" }, name), meter(score, null, score === null ? "unavailable" : "pass"), el("span", {}, fmt(score))));
  const phases = Object.entries(r.latency || {}).map(([phase, seconds]) => {
    const u = (r.usage || {})[phase];
    return el("tr", {}, el("td", {}, phase), el("td", { class: "num" }, u ? u.prompt_tokens + u.completion_tokens : 0), el("td", { class: "num" }, `${fmt(seconds)} s`));
  });
  fill($("#run-detail"),
    el("h3", {}, r.question), el("p", {}, `${r.conversation} q${r.q} · ${r.category} ${r.category_name} · ${r.system}`),
    el("p", {}, el("b", {}, "gold: "), r.gold ?? "—", el("br"), el("b", {}, "answer: "), r.prediction ?? "—", ` (F1 ${fmt(r.f1)})`),
    el("p", { class: "reason" }, r.reason ?? ""),
    row.outcome ? el("p", {}, "escalation: ", el("span", { class: `outcome outcome-${row.outcome.replace(" ", "-")}` }, row.outcome)) : null,
    signals.length ? el("section", {}, el("h4", {}, `Gate signals (score ${fmt(r.gate_score)})`), el("ul", { class: "signals" }, signals)) : null,
    r.candidates ? el("section", {}, el("h4", {}, "Answers weighed"), el("table", {},
      el("tr", {}, ["source", "answer", "support", "F1"].map((h) => el("th", {}, h))),
      r.candidates.map((c) => el("tr", { class: c.won ? "won" : "" }, el("td", {}, c.source + (c.won ? " ✓" : "")), el("td", {}, c.text),
        el("td", { class: "num" }, fmt(c.support)), el("td", { class: "num" }, fmt(c.f1))))), el("p", { class: "reason" }, r.arbitration ?? "")) : null,
    phases.length ? el("section", {}, el("h4", {}, "Tokens and latency per phase"), el("table", {}, phases)) : null);
}

async function showPlots(name, plots) {
  const box = $("#plots");
  for (const img of box.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  box.replaceChildren();
  for (const plot of plots) {
    const blob = await api("GET", `/v1/runs/${encodeURIComponent(name)}/plots/${plot}`);
    box.append(el("figure", {}, el("img", { src: URL.createObjectURL(blob), alt: `${plot} plot of ${name}`, dataset: { plot } }),
      el("figcaption", {}, `${plot}.png`)));
  }
}

// ---------------------------------------------------------------- wiring

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("#tab-memory").hidden = name !== "memory";
  $("#tab-runs").hidden = name !== "runs";
}

async function start() {
  await guarded("loading", async () => {
    const info = await api("GET", "/v1/info");
    $("#key-form").hidden = true;
    $("#runs-tab").hidden = !info.runs.length;
    fill($("#run-pick"), el("option", { value: "" }, "pick a run…"), info.runs.map((r) => el("option", {}, r)));
    await loadScopes();
    if (info.demo && !state.scope) await openScope(info.demo);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  $("#scope-pick").addEventListener("change", (e) => e.target.value && openScope(JSON.parse(e.target.value)));
  $("#scope-form").addEventListener("submit", (e) => {
    e.preventDefault();
    openScope({ user_id: $("#user-id").value, agent_id: $("#agent-id").value, session_id: $("#session-id").value });
  });
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.scope) guarded("searching", () => search($("#search-q").value));
  });
  $("#search-clear").addEventListener("click", () => state.scope && guarded("listing memories", loadMemories));
  $("#ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!state.scope) return status("pick a scope first", "error");
    guarded("answering", () => ask($("#question").value));
  });
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("#api-key").value;
    sessionStorage.setItem("dualmem-key", state.key);
    start();
  });
  $("#run-form").addEventListener("change", () => guarded("loading the run", loadRun));
  start();
});
