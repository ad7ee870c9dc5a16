// The page of `mrigan serve`: uploads, server-side picks, the case list (polled from the JSON
// API). Every text from the server or a file name goes in through textContent, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const views = new Map();  // case id -> its element

async function api(path, options = {}) {
  const response = await fetch(path, {credentials: "same-origin", ...options});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

function bytes(n) {
  if (n < 1024 * 1024) return `${Math.max(1, Math.round(n / 1024))} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// ---------------------------------------------------------------- adding cases

function note(text, cls) {
  const line = document.createElement("div");
  line.className = `upload ${cls || ""}`;
  line.textContent = text;
  $("#uploads").prepend(line);
  return line;
}

function upload(file) {
  const line = note(`${file.name}: uploading…`);
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/cases");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      line.textContent = `${file.name}: uploading ${Math.round(100 * e.loaded / e.total)}%`;
    }
  };
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (xhr.status === 201) {
      line.remove();
      refresh();
    } else {
      line.className = "upload failed";
      line.textContent = `${file.name}: ${(body && body.error) || xhr.status}`;
    }
  };
  xhr.onerror = () => {
    line.className = "upload failed";
    line.textContent = `${file.name}: the upload failed (is the server running?)`;
  };
  xhr.send(form);
}

function addFiles(files) {
  for (const file of files) upload(file);
}

async function pick(path) {
  try {
    await api("/api/cases", {method: "POST", headers: {"content-type": "application/json"},
                             body: JSON.stringify({path})});
    refresh();
  } catch (e) {
    note(`${path}: ${e.message}`, "failed");
  }
}

async function browse(dir) {
  let listing;
  try {
    listing = await api(`/api/media?dir=${encodeURIComponent(dir)}`);
  } catch (e) {
    note(`media root: ${e.message}`, "failed");
    return;
  }
  const where = $("#media-path");
  where.replaceChildren();
  const label = document.createElement("span");
  label.textContent = `/${listing.dir}`;
  where.append(label);
  if (listing.parent !== null) {
    const up = document.createElement("button");
    up.type = "button";
    up.className = "up";
    up.textContent = "up";
    up.onclick = () => browse(listing.parent);
    where.append(up);
  }
  const list = $("#media-list");
  list.replaceChildren();
  for (const entry of listing.entries) {
    const item = document.createElement("li");
    item.dataset.path = entry.path;
    const button = document.createElement("button");
    button.type = "button";
    if (entry.kind === "folder") {
      button.className = "folder";
      button.textContent = `${entry.name}/`;
      button.onclick = () => browse(entry.path);
      item.append(button);
    } else {
      const name = document.createElement("span");
      name.textContent = `${entry.name} (${entry.kind}, ${bytes(entry.size)})`;
      button.className = "analyse";
      button.textContent = "analyse";
      button.onclick = () => pick(entry.path);
      item.append(name, button);
    }
    list.append(item);
  }
  if (!listing.entries.length) {
    const item = document.createElement("li");
    item.className = "note";
    item.textContent = "no image, video or folder here";
    list.append(item);
  }
}

// ---------------------------------------------------------------- the case list

function show(el, on) { el.hidden = !on; }

function render(c) {
  let el = views.get(c.id);
  if (!el) {
    el = $("#case-template").content.firstElementChild.cloneNode(true);
    el.dataset.id = c.id;
    $(".name", el).textContent = c.name;
    $(".name", el).title = `${c.kind} · case ${c.id}`;
    $(".cancel", el).onclick = () => act(c.id, el);
    $(".remove", el).onclick = () => act(c.id, el);
    views.set(c.id, el);
  }
  el.dataset.status = c.status;
  const status = $(".status", el);
  status.textContent = c.cancel_requested && c.status === "running" ? "cancelling" : c.status;
  status.className = `status ${c.status}`;
  const bar = $("progress", el);
  bar.value = c.progress;
  show(bar, c.status === "queued" || c.status === "running");
  const stats = [];
  if (c.status === "running") {
    if (c.phase) stats.push(c.phase);
    const frames = c.phase === "finding faces" ? c.frames_scanned : c.frames_done;
    if (frames !== null) stats.push(`frames ${frames}${c.frames_total ? "/" + c.frames_total : ""}`);
    if (c.faces !== null) stats.push(`faces ${c.faces}`);
    stats.push(`${Math.round(100 * c.progress)}%`);
  }
  const input = c.inputs[0];
  if (input && c.status !== "running") {
    stats.push(`${input.frames_read} frame(s) analysed`, `${input.faces} face(s)`);
  }
  if (c.elapsed !== null) stats.push(`elapsed ${seconds(c.elapsed)}`);
  if (c.eta !== null) stats.push(`ETA ${seconds(c.eta)}`);
  $(".stats", el).textContent = stats.join(" · ");
  const verdict = $(".verdict", el);
  if (input && input.verdict) {
    verdict.dataset.verdict = input.verdict;
    verdict.className = `verdict ${input.verdict}`;
    verdict.textContent = `${input.verdict.toUpperCase()} · score ${Number(input.score).toFixed(3)}`;
  }
  show(verdict, Boolean(input && input.verdict));
  const warning = $(".warning", el);
  warning.textContent = c.warning ? `warning: ${c.warning}` : "";
  show(warning, Boolean(c.warning && input && input.verdict));
  for (const [cls, href] of [[".open", c.report], [".json", c.results], [".zip", c.zip]]) {
    const link = $(cls, el);
    if (href) link.href = href; else link.removeAttribute("href");
    show(link, Boolean(href));
  }
  show($(".cancel", el), c.status === "queued" || c.status === "running");
  show($(".remove", el), !(c.status === "queued" || c.status === "running"));
  const err = $(".error", el);
  err.textContent = c.error || "";
  show(err, Boolean(c.error));
  return el;
}

async function act(id, el) {
  try {
    const answer = await api(`/api/cases/${encodeURIComponent(id)}`, {method: "DELETE"});
    if (answer.removed) {
      el.remove();
      views.delete(id);
    }
  } catch (e) {
    $(".error", el).textContent = e.message;
    show($(".error", el), true);
  }
  refresh();
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  let busy = false;
  try {
    const {cases} = await api("/api/cases");
    const list = $("#cases");
    const seen = new Set();
    cases.forEach((c, i) => {
      seen.add(c.id);
      const el = render(c);
      if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
      busy = busy || c.status === "queued" || c.status === "running";
    });
    for (const [id, el] of views) {
      if (!seen.has(id)) { el.remove(); views.delete(id); }
    }
    show($("#empty"), cases.length === 0);
    const health = await api("/api/health");
    $("#health").textContent = `mrigan ${health.version} · ${health.cases} case(s) · ` +
        `${health.running} running, ${health.queued} queued · ${health.workers} worker(s)`;
    $("#health").className = "health ok";
  } catch (e) {
    $("#health").textContent = `server unreachable: ${e.message}`;
    $("#health").className = "health down";
  }
  timer = setTimeout(refresh, busy ? 700 : 3000);
}

// ---------------------------------------------------------------- start

async function start() {
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("#file").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
  try {
    const health = await api("/api/health");
    if (health.media_root) {
      show($("#media"), true);
      browse("");
    }
  } catch (e) {
    note(`server: ${e.message}`, "failed");
  }
  refresh();
}

start();
