// Wafer's dashboard: every call is the authenticated admin API, with the token from this
// tab's session storage. Counters come from /_wafer/stats (the same as /metrics), polled
// every POLL_MS; rates and percentiles are computed from the change between two polls.
"use strict";

const POLL_MS = 2000;
const HISTORY = 60; // samples kept per function for the rate chart (2 minutes)
const TOKEN_KEY = "wafer-token";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  previous: null, // the last /stats answer, with its time
  history: new Map(), // function name -> requests/s samples
  selected: null,
  shown: null, // the selected function's active version and split, as its detail shows them
  follow: null, // AbortController of the followed log
  timer: null,
};

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const response = await fetch("/_wafer/" + path, {
    ...options,
    headers: { Authorization: "Bearer " + state.token, ...(options.headers || {}) },
  });
  if (response.status === 401 || response.status === 403) throw new Unauthorized();
  if (!response.ok) throw new Error((await response.text()).trim() || response.statusText);
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// --- login ----------------------------------------------------------------------------

function showLogin(message = "") {
  stop();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("status").textContent = "";
  $("token").focus();
}

async function login(token) {
  state.token = token;
  try {
    await json("functions");
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e instanceof Unauthorized ? "That token was refused." : "Cannot reach the server: " + e.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  await refresh();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  login($("token").value.trim());
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  showLogin();
});

// --- the functions table ---------------------------------------------------------------

function stop() {
  clearTimeout(state.timer);
  if (state.follow) state.follow.abort();
  state.follow = null;
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const [functions, stats, invocations] = await Promise.all([
      json("functions"),
      json("stats"),
      json("invocations?limit=10"),
    ]);
    render(functions, stats, Date.now());
    renderInvocations(invocations, stats.queue_depth);
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("The token was refused.");
    $("status").textContent = "cannot reach the server: " + e.message;
  }
  state.timer = setTimeout(refresh, POLL_MS);
}

const total = (requests) => Object.values(requests).reduce((a, b) => a + b, 0);

// The q-quantile of the observations in `buckets` ([[le, count], ...], counts per bucket),
// interpolated within its bucket; null when there are none.
function quantile(buckets, q) {
  const count = buckets.reduce((a, [, n]) => a + n, 0);
  if (count === 0) return null;
  let seen = 0;
  let lower = 0;
  for (const [le, n] of buckets) {
    if (seen + n >= q * count) {
      if (le === "+Inf") return Infinity;
      return lower + (le - lower) * ((q * count - seen) / n);
    }
    seen += n;
    if (le !== "+Inf") lower = le;
  }
  return Infinity;
}

function seconds(value) {
  if (value === null) return "–";
  if (value === Infinity) return "> 60 s";
  if (value < 0.001) return (value * 1e6).toFixed(0) + " µs";
  if (value < 1) return (value * 1e3).toFixed(1) + " ms";
  return value.toFixed(2) + " s";
}

function sparkline(samples, kind = "") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark " + kind);
  svg.setAttribute("viewBox", `0 0 ${HISTORY - 1} 28`);
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...samples);
  const points = samples.map((v, i) => `${i + HISTORY - samples.length},${27 - (v / max) * 26}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  return svg;
}

function grants(config) {
  const g = config.grants || {};
  const list = [];
  if (g.kv) list.push("kv");
  for (const rule of g.http || []) list.push("http " + (rule.host || rule.url || JSON.stringify(rule)));
  for (const dir of g.dirs || []) list.push("dir " + (dir.guest || dir.path || JSON.stringify(dir)));
  for (const topic of g.publish || []) list.push("publish " + topic);
  for (const topic of g.subscribe || []) list.push("subscribe " + topic);
  if (g.listen) list.push("listen " + g.listen);
  for (const key of Object.keys(g.config || {})) list.push("config " + key);
  for (const key of Object.keys(g.secrets || {})) list.push("secret " + key);
  return list.length ? list.map((text) => el("span", { class: "grant" }, text)) : ["–"];
}

// Each function's counters, summed over its live versions (several while a traffic split
// stands); `version` names them, so a change of versions restarts the rates.
function byFunction(stats) {
  const map = new Map();
  for (const s of stats) {
    const sum = map.get(s.name);
    if (!sum) {
      map.set(s.name, { ...s, version: String(s.version), requests: { ...s.requests } });
      continue;
    }
    sum.version += "," + s.version;
    for (const key of Object.keys(sum.requests)) sum.requests[key] += s.requests[key] || 0;
    sum.duration_buckets = sum.duration_buckets.map(([le, n], i) => [le, n + (s.duration_buckets[i] || [0, 0])[1]]);
  }
  return map;
}

// A traffic split as `v2 10% · v1 90%`.
function split(traffic) {
  return traffic.split.map((s) => "v" + s.version + " " + s.percent + "%").join(" · ");
}

function render(functions, stats, now) {
  const byName = byFunction(stats.functions);
  const previous = state.previous;
  const elapsed = previous ? (now - previous.at) / 1000 : 0;
  const tbody = $("functions").querySelector("tbody");
  tbody.replaceChildren();
  $("empty").hidden = functions.length > 0;
  for (const f of functions) {
    const s = byName.get(f.name);
    const before = previous && previous.byName.get(f.name);
    let rate = null, errors = null, p50 = null, p99 = null;
    if (s && before && before.version === s.version && elapsed > 0) {
      rate = (total(s.requests) - total(before.requests)) / elapsed;
      errors = (s.requests["5xx"] - before.requests["5xx"]) / elapsed;
      const delta = s.duration_buckets.map(([le, n], i) => [le, n - before.duration_buckets[i][1]]);
      p50 = quantile(delta, 0.5);
      p99 = quantile(delta, 0.99);
    }
    const history = state.history.get(f.name) || { rate: [], errors: [], p99: [] };
    if (rate !== null) {
      history.rate.push(rate);
      history.errors.push(errors);
      history.p99.push(p99 === null || p99 === Infinity ? 0 : p99 * 1000);
    }
    for (const series of Object.values(history)) while (series.length > HISTORY) series.shift();
    state.history.set(f.name, history);
    const row = el(
      "tr",
      { "data-name": f.name, class: f.name === state.selected ? "selected" : "" },
      el("td", { class: "name" }, f.name),
      el(
        "td",
        { class: "version active-version" },
        "v" + f.version + " of " + f.versions,
        ...(f.traffic ? [el("div", { class: "split" }, split(f.traffic))] : []),
      ),
      el("td", { class: "abi" }, f.abi),
      el("td", { class: "routes mono" }, f.routes.join(" ")),
      el("td", { class: "grants" }, ...grants(f.config)),
      el("td", { class: "num requests" }, s ? String(total(s.requests)) : "0"),
      el("td", { class: "num rate" }, rate === null ? "–" : rate.toFixed(1)),
      el("td", { class: "num errors" + (errors > 0 ? " error-cell" : "") }, errors === null ? "–" : errors.toFixed(1)),
      el("td", { class: "num p50" }, seconds(p50)),
      el("td", { class: "num p99" }, seconds(p99)),
      el(
        "td",
        { class: "chart" },
        el("span", { class: "spark-label" }, "req/s"),
        sparkline(history.rate),
        el("span", { class: "spark-label" }, "errors/s"),
        sparkline(history.errors, "bad"),
        el("span", { class: "spark-label" }, "p99 ms"),
        sparkline(history.p99),
      ),
    );
    if (f.error) row.append(el("td", { class: "error-cell" }, f.error));
    row.addEventListener("click", () => select(f.name));
    tbody.append(row);
  }
  state.previous = { at: now, byName };
  if (state.selected) {
    const current = functions.find((f) => f.name === state.selected);
    if (!current) closeDetail();
    else if (state.shown !== shownKey(current.version, current.traffic)) showVersions(current.name);
  }
}

function renderInvocations(invocations, depth) {
  $("queue-depth").textContent = depth === null || depth === undefined ? "?" : String(depth);
  const tbody = $("invocations").querySelector("tbody");
  tbody.replaceChildren(
    ...invocations.map((i) =>
      el(
        "tr",
        {},
        el("td", { class: "mono" }, i.id),
        el("td", {}, i.function),
        el("td", {}, i.state),
        el("td", { class: "num" }, String(i.attempts)),
        el("td", { class: "num" }, i.status === undefined ? "–" : String(i.status)),
      ),
    ),
  );
}

// --- one function: versions, rollback, log ---------------------------------------------

async function select(name) {
  state.selected = name;
  for (const row of $("functions").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", row.dataset.name === name);
  }
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  $("rollback-result").textContent = "";
  $("log").textContent = "";
  await showVersions(name);
  followLog(name);
}

function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  if (state.follow) state.follow.abort();
}

// What the detail shows: the active version and the split, if any.
function shownKey(active, traffic) {
  return active + " " + JSON.stringify(traffic || null);
}

async function showVersions(name) {
  const record = await json("functions/" + encodeURIComponent(name));
  state.shown = shownKey(record.active, record.traffic);
  $("detail-version").textContent = String(record.active);
  $("rollback").disabled = !record.traffic && !record.versions.some((v) => v.version < record.active);
  const shares = new Map((record.traffic ? record.traffic.split : []).map((s) => [s.version, s.percent]));
  const tbody = $("versions").querySelector("tbody");
  tbody.replaceChildren(
    ...record.versions
      .slice()
      .reverse()
      .map((v) =>
        el(
          "tr",
          { class: v.version === record.active ? "active-version" : "" },
          el(
            "td",
            {},
            "v" + v.version +
              (v.version === record.active ? " (active)" : "") +
              (shares.has(v.version) ? " " + shares.get(v.version) + "% of requests" : ""),
          ),
          el("td", {}, v.created),
          el("td", {}, v.abi),
          el("td", { class: "mono" }, v.digest.slice(0, 19) + "…"),
          el("td", { class: "mono" }, (v.config.routes || []).join(" ")),
        ),
      ),
  );
}

$("rollback").addEventListener("click", async () => {
  const name = state.selected;
  try {
    const answer = await json("functions/" + encodeURIComponent(name) + "/rollback", { method: "POST" });
    $("rollback-result").textContent = "now serving v" + (answer.active ?? answer.version ?? "?");
  } catch (e) {
    $("rollback-result").textContent = e.message;
  }
  await showVersions(name);
  await refresh();
});

// Follows the function's log: a Server-Sent Events stream read with fetch (EventSource
// cannot send the token). A stream that ends (a restart, a dropped connection) is followed
// again after two seconds, from the last line shown, until another function is chosen.
async function followLog(name) {
  if (state.follow) state.follow.abort();
  const follow = new AbortController();
  state.follow = follow;
  const log = $("log");
  let since = null;
  while (!follow.signal.aborted) {
    const query = since === null ? "tail=50" : "tail=1000&since=" + encodeURIComponent(since);
    try {
      const response = await api("functions/" + encodeURIComponent(name) + "/logs?follow=true&" + query, {
        signal: follow.signal,
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let end;
        while ((end = pending.indexOf("\n\n")) >= 0) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
          if (!data) continue;
          if (event.startsWith("event: lagged")) {
            log.append(`[${data} lines skipped]\n`);
            continue;
          }
          const line = JSON.parse(data);
          since = line.time;
          log.append(el("span", { class: "log-line" }, `${line.time} [${line.request_id}] ${line.text}\n`));
          log.scrollTop = log.scrollHeight;
        }
      }
      if (!follow.signal.aborted) log.append("[log stream ended; reconnecting]\n");
    } catch (e) {
      if (e.name === "AbortError") return;
      if (e instanceof Unauthorized) return showLogin("The token was refused.");
      log.append(`[log stream ended: ${e.message}; reconnecting]\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

if (state.token) login(state.token);
else showLogin();
