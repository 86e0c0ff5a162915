// The cairn web UI: a page of the daemon's own origin that talks to its API with the token
// `cairn ui` hands over in the URL's fragment (never sent to a server), kept for this tab only.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "cairn-api-token";

function takeToken() {
  const m = location.hash.match(/token=([0-9a-f]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

let token = takeToken();

async function api(path, options = {}) {
  const r = await fetch("/api/v0" + path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: "Bearer " + token },
  });
  if (r.status === 401) {
    showLogin("the daemon refused the token (it changes at every start); run `cairn ui` again");
    throw new Error("unauthorized");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function human(bytes) {
  if (typeof bytes !== "number") return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return (i === 0 ? bytes : bytes.toFixed(bytes < 10 ? 1 : 0)) + " " + units[i];
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.target = "_blank";
  a.rel = "noopener";
  return a;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty, "dim");
    td.colSpan = columns;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const r of rows) tbody.append(r);
}

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  if (message) error(message);
}

function error(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

async function refreshStatus() {
  const s = await api("/status");
  $("peer-id").textContent = s.peer_id;
  $("conn").textContent = s.network + " network · " + s.reachability;
  $("conn").className = "badge ok";
  $("peer-count").textContent = s.connected_peers;
  $("peer-detail").textContent = s.connected_peers === 1 ? "peer connected" : "peers connected";
  $("routing").textContent = s.routing_table;
  $("reach").textContent = "hole punches " + s.hole_punches + " · relayed addresses " + s.relayed_addrs.length;
  $("stored").textContent = human(s.stored_bytes);
  $("storage-detail").textContent = "of " + human(s.quota_bytes) + " · " + s.chunks_pinned +
    " pinned, " + s.chunks_replica + " replica, " + s.chunks_cached + " cached chunks";
  $("repair").textContent = s.repair.chunks_below_target + " below " + s.replication;
  $("repair-detail").textContent = s.repair.chunks_responsible + " responsible · " +
    s.repair.copies_sent + " copies sent (" + human(s.repair.bytes_sent) + ")";
  $("bandwidth").textContent = human(s.chunk_bytes_received) + " / " + human(s.chunk_bytes_sent);
}

async function refreshPeers() {
  const peers = await api("/peers");
  fill($("peers"), peers.map((p) => {
    const tr = document.createElement("tr");
    tr.append(
      cell(p.peer_id, "mono"),
      cell(p.addr, "mono"),
      cell(p.rtt_ms == null ? "–" : p.rtt_ms.toFixed(1) + " ms", "num"),
      cell(p.connected ? (p.relayed ? "relayed" : "direct") : "–"),
    );
    return tr;
  }), "no peers yet: join a network with `cairn peers add TICKET`", 4);
}

async function refreshPins() {
  const pins = await api("/pins");
  const rows = await Promise.all(pins.map(async (id) => {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.className = "mono";
    td.append(link("/c/" + id + "/", id));
    let size = "?";
    try { size = human((await api("/ls/" + id)).size); } catch (_) { /* shown as ? */ }
    tr.append(td, cell(size, "num"));
    return tr;
  }));
  fill($("pins"), rows, "nothing pinned", 2);
}

async function refreshNames() {
  const keys = await api("/keys");
  const rows = await Promise.all(keys.map(async (k) => {
    const tr = document.createElement("tr");
    let target = "not published";
    try { target = (await api("/names/" + k.name)).id; } catch (_) { /* unpublished */ }
    const name = document.createElement("td");
    name.className = "mono";
    name.append(link("/n/" + k.name + "/", k.name));
    tr.append(cell(k.key), name, cell(target, "mono"));
    return tr;
  }));
  fill($("names"), rows, "no keys", 3);
}

async function refresh() {
  try {
    await refreshStatus();
    await Promise.all([refreshPeers(), refreshPins(), refreshNames()]);
    error("");
  } catch (e) {
    if (e.message !== "unauthorized") {
      $("conn").textContent = "daemon unreachable";
      $("conn").className = "badge";
      error(e.message);
    }
  }
}

// Put: the file is the request body, so the daemon stores it as it arrives; the bar follows
// the upload.
function put(file) {
  const bar = $("put-progress");
  bar.hidden = false;
  bar.value = 0;
  $("put-result").textContent = "";
  $("put-status").textContent = "putting " + file.name + " (" + human(file.size) + ")…";
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/v0/put");
  xhr.setRequestHeader("Authorization", "Bearer " + token);
  const started = performance.now();
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* below */ }
    if (xhr.status !== 200) {
      $("put-status").textContent = "put failed: " + (body.error || xhr.statusText);
      return;
    }
    bar.value = 1;
    const secs = (performance.now() - started) / 1000;
    $("put-status").textContent = "put " + file.name + ": " + human(body.size) + " in " +
      secs.toFixed(1) + " s, " + body.replicas + " copies placed on other peers";
    $("put-result").replaceChildren(link("/c/" + body.id, body.id));
    $("put-result").dataset.id = body.id;
    refresh();
  };
  xhr.onerror = () => { $("put-status").textContent = "put failed: the daemon did not answer"; };
  xhr.send(file);
}

function wire() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $("file").addEventListener("change", () => { if ($("file").files[0]) put($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) put(e.dataTransfer.files[0]);
  });
  $("get-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const target = $("get-target").value.trim().replace(/^\/+/, "");
    const root = target.split("/")[0];
    try {
      const r = await api("/resolve/" + target.split("/").map(encodeURIComponent).join("/"));
      $("get-status").textContent = r.kind + ", " + human(r.size) + ": " + r.id;
      const base = root.startsWith("cairnname1") ? "/n/" : "/c/";
      window.open(base + target.split("/").map(encodeURIComponent).join("/") + (r.kind === "dir" ? "/" : ""), "_blank", "noopener");
    } catch (err) {
      $("get-status").textContent = "cannot get " + target + ": " + err.message;
    }
  });
}

function start() {
  if (!token) { showLogin(); return; }
  $("login").hidden = true;
  $("app").hidden = false;
  refresh();
}

wire();
start();
setInterval(() => { if (token && !$("app").hidden) refresh(); }, 3000);
