/// The page `inception serve` answers at `/` (unless `--no-ui`): try a served model in a browser. Everything is in
/// this one document — no script, style or font from elsewhere — and it speaks only the server's own API:
/// `/v1/models`, `/v1/models/{model}/classify`, `/explain` and `/compare`, and `/metrics` for the second tab.
enum WebPage {
    /// Nothing from elsewhere: scripts and styles only inline, images only from this server or drawn in the page.
    static let policy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        + "img-src 'self' blob: data:; connect-src 'self' blob: data:"

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>inception serve</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 56rem; padding: 0.75rem; color: #1b1b1b; }
  h1 { font-size: 1.3rem; margin: 0.2rem 0 0.8rem; }
  [role=tablist] { display: flex; gap: 0.25rem; border-bottom: 2px solid #444; margin-bottom: 0.8rem; }
  [role=tab] { font: inherit; padding: 0.45rem 0.9rem; border: 2px solid #444; border-bottom: none;
               background: #eee; cursor: pointer; }
  [role=tab][aria-selected=true] { background: #fff; font-weight: 600; }
  button:focus-visible, select:focus-visible, input:focus-visible, label:focus-within {
    outline: 3px solid #0a58ca; outline-offset: 2px; }
  .drop { display: block; border: 2px dashed #666; padding: 1rem; text-align: center; cursor: pointer;
          margin: 0.6rem 0; }
  .drop.over { background: #e7f0ff; }
  .row { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
  .row > * { flex: 1 1 16rem; min-width: 0; }
  img { max-width: 100%; height: auto; display: block; }
  ol { padding: 0; list-style: none; margin: 0; }
  .class { display: block; width: 100%; text-align: left; font: inherit; border: 1px solid #999;
           background: #fff; margin: 0 0 0.35rem; padding: 0.3rem 0.4rem; cursor: pointer; }
  .class[aria-pressed=true] { border: 2px solid #0a58ca; }
  .bar { height: 0.5rem; background: #0a58ca; margin-top: 0.2rem; }
  .error { color: #a40000; font-weight: 600; min-height: 1.4em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 0.25rem 0.4rem; border-bottom: 1px solid #ccc; }
  .verdict { font-size: 1.15rem; font-weight: 600; }
</style>
</head>
<body>
<h1>inception serve</h1>
<div role="tablist" aria-label="Views">
  <button role="tab" id="tab-try" aria-controls="try" aria-selected="true">Try a model</button>
  <button role="tab" id="tab-state" aria-controls="state" aria-selected="false" tabindex="-1">Server</button>
</div>
<section id="try" role="tabpanel" aria-labelledby="tab-try">
  <label for="model">Model</label>
  <select id="model"></select>
  <div id="classifier">
    <label class="drop" id="drop">Drop a photo here, paste one, or choose a file
      <input type="file" id="photo" accept="image/jpeg,image/png"></label>
    <p class="error" id="error" role="alert"></p>
    <div class="row">
      <div><h2>Top five</h2><ol id="top" aria-label="Top five classes"></ol></div>
      <div><h2 id="overlay-title">Where it looked</h2><img id="overlay" alt=""></div>
    </div>
  </div>
  <div id="faces" hidden>
    <p>Two photos of faces: are they the same person?</p>
    <label for="face-a">First face</label> <input type="file" id="face-a" accept="image/jpeg,image/png"><br>
    <label for="face-b">Second face</label> <input type="file" id="face-b" accept="image/jpeg,image/png"><br>
    <button id="compare">Compare</button>
    <p class="error" id="face-error" role="alert"></p>
    <p class="verdict" id="verdict" aria-live="polite"></p>
    <div class="row"><img id="overlay-a" alt=""><img id="overlay-b" alt=""></div>
  </div>
</section>
<section id="state" role="tabpanel" aria-labelledby="tab-state" hidden>
  <table aria-label="Models">
    <thead><tr><th>Model</th><th>Queue</th><th>Batches</th><th>Mean batch</th><th>Mean latency</th>
      <th>Requests</th></tr></thead>
    <tbody id="metrics"></tbody>
  </table>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let models = [], photo = null, clicked = null;

async function failure(response) {
  try { return (await response.json()).error || response.statusText; } catch { return response.statusText; }
}

async function loadModels() {
  const response = await fetch("/v1/models");
  models = (await response.json()).models;
  $("model").replaceChildren(...models.map((m) => new Option(m.name + (m.ready ? "" : " (loading)"), m.name)));
  chooseModel();
}

function current() { return models.find((m) => m.name === $("model").value); }

function chooseModel() {
  // The face model (it has an embedding, whether or not a classifier came with its weights) compares two faces.
  const face = current() && (current().outputs || []).includes("embedding");
  $("classifier").hidden = face;
  $("faces").hidden = !face;
  if (photo && !face) classify(photo);
}

async function classify(file) {
  photo = file;
  $("error").textContent = "";
  $("top").replaceChildren();
  $("overlay").removeAttribute("src");
  $("overlay").alt = "";
  delete $("overlay").dataset.index;
  const model = current().name;
  const response = await fetch(`/v1/models/${model}/classify?top=5`, { method: "POST", body: file });
  if (!response.ok) { $("error").textContent = await failure(response); return; }
  const result = await response.json();
  $("top").replaceChildren(...result.predictions.map((p, rank) => {
    const item = document.createElement("li"), button = document.createElement("button");
    button.className = "class";
    button.dataset.index = p.index;
    button.setAttribute("aria-pressed", "false");
    const percent = (100 * p.probability).toFixed(2) + "%";
    button.innerHTML = `<span class="label"></span> <span class="probability">${percent}</span>` +
      `<div class="bar" style="width:${Math.max(1, 100 * p.probability)}%"></div>`;
    button.querySelector(".label").textContent = p.label;
    button.addEventListener("click", () => explain(p.index, button));
    item.append(button);
    return item;
  }));
  await explain(result.predictions[0].index, $("top").querySelector("button"));
}

async function explain(index, button) {
  clicked = index;
  for (const b of $("top").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
  const model = current().name;
  const response = await fetch(`/v1/models/${model}/explain?class=${index}`, { method: "POST", body: photo });
  if (!response.ok) { $("error").textContent = await failure(response); return; }
  if (clicked !== index) return;
  const old = $("overlay").src;
  $("overlay").src = URL.createObjectURL(await response.blob());
  $("overlay").alt = "Where the network looked for " + button.querySelector(".label").textContent;
  $("overlay").dataset.index = index;
  if (old) URL.revokeObjectURL(old);
}

async function compare() {
  $("face-error").textContent = "";
  $("verdict").textContent = "";
  const a = $("face-a").files[0], b = $("face-b").files[0];
  if (!a || !b) { $("face-error").textContent = "choose two photos"; return; }
  const form = new FormData();
  form.append("a", a, a.name);
  form.append("b", b, b.name);
  const response = await fetch(`/v1/models/${current().name}/compare`, { method: "POST", body: form });
  if (!response.ok) { $("face-error").textContent = await failure(response); return; }
  const r = await response.json();
  $("verdict").textContent = `distance ${r.distance.toFixed(4)}: ` +
    (r.same ? "the same person" : "different people") + ` (threshold ${r.threshold})`;
  for (const [i, id] of ["overlay-a", "overlay-b"].entries()) {
    $(id).src = "data:image/png;base64," + r.overlays[i];
    $(id).alt = `Where face ${i + 1} matched the other`;
  }
}

function parseMetrics(text) {
  const rows = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^(inception_[a-z_]+)\{(.*)\} (\S+)$/);
    if (!m) continue;
    const model = (m[2].match(/model="([^"]*)"/) || [])[1];
    if (!model) continue;
    const row = rows[model] ||= { queue: 0, batches: 0, images: 0, seconds: 0, requests: 0 };
    const value = Number(m[3]);
    if (m[1] === "inception_queue_depth") row.queue = value;
    if (m[1] === "inception_batch_size_count") row.batches = value;
    if (m[1] === "inception_batch_size_sum") row.images = value;
    if (m[1] === "inception_batch_duration_seconds_sum") row.seconds = value;
    if (m[1] === "inception_http_requests_total") row.requests += value;
  }
  return rows;
}

async function showState() {
  const response = await fetch("/metrics");
  const rows = parseMetrics(await response.text());
  $("metrics").replaceChildren(...models.map((m) => {
    const r = rows[m.name] || { queue: 0, batches: 0, images: 0, seconds: 0, requests: 0 };
    const tr = document.createElement("tr");
    const cells = [m.name + (m.ready ? "" : " (loading)"), r.queue, r.batches,
      r.batches ? (r.images / r.batches).toFixed(2) : "–",
      r.batches ? (1000 * r.seconds / r.batches).toFixed(1) + " ms" : "–", r.requests];
    tr.replaceChildren(...cells.map((c) => {
      const td = document.createElement("td");
      td.textContent = c;
      return td;
    }));
    return tr;
  }));
}

function selectTab(tab) {
  for (const t of document.querySelectorAll("[role=tab]")) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
  if (tab.id === "tab-state") showState();
}

for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll("[role=tab]")], i = tabs.indexOf(tab);
    if (e.key === "ArrowRight") selectTab(tabs[(i + 1) % tabs.length]);
    if (e.key === "ArrowLeft") selectTab(tabs[(i + tabs.length - 1) % tabs.length]);
  });
}
$("model").addEventListener("change", chooseModel);
$("photo").addEventListener("change", () => { if ($("photo").files[0]) classify($("photo").files[0]); });
$("compare").addEventListener("click", compare);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.kind === "file");
  if (item && !$("classifier").hidden) classify(item.getAsFile());
});
setInterval(() => { if (!$("state").hidden) showState(); }, 2000);
loadModels();
</script>
</body>
</html>
"""#
}
