// vaekit explore: the page. Plain JavaScript and canvas, no libraries.
// State: `current` is the current latent code (L numbers); the map shows the test codes in a plane
// (the latent axes for L <= 2, else two principal directions), and the directions off that plane
// are held at the current code. Every decode goes to the server (/api/decode); at most one is in
// flight, and the latest code wins.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SLIDERS_SHOWN = 8;
const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);

let info = null;          // /api/info
let current = null;       // Float64Array (L): the current code
let picks = [];           // up to two picked examples (/api/example answers)
let uploaded = null;      // the last encoded input (its map position is starred)
let preview = null;       // the code under the pointer, while hovering the map
let mapView = null;       // map scaling: {x0, y0, sx, sy}
let pointsLayer = null;   // the scatter, drawn once
let sampleSeed = 0;
let currentContext = null;  // a conditional model's class (the selector) or context columns' values (the sliders); null for an unconditional model
let currentZ = null;      // the code last asked to decode, redrawn when the class changes

// ----- talking to the server ------------------------------------------------------------------

function status(text) { $("status").textContent = text || ""; }

async function api(path, body, type) {
  const headers = {};
  if (token) headers["X-Vaekit-Token"] = token;
  const init = { method: body === undefined ? "GET" : "POST", headers };
  if (body !== undefined) {
    headers["Content-Type"] = type || "application/json";
    init.body = type ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function guarded(fn) {  // run an async action; show its error in the status line instead of throwing
  return (...args) => fn(...args).then(() => status(""), (err) => status(err.message));
}

// One decode in flight at a time; a code asked for meanwhile replaces any earlier waiting one.
const decoder = { busy: false, next: null };
function requestDecode(z) {
  currentZ = Array.from(z);
  decoder.next = Array.from(z);
  if (!decoder.busy) pumpDecode();
}
async function pumpDecode() {
  decoder.busy = true;
  while (decoder.next) {
    const z = decoder.next;
    decoder.next = null;
    try {
      const out = await api("/api/decode", { z: [z], context: currentContext });
      drawItem($("decoded"), out, 0);
      $("decoded-text").textContent = out.text ? out.text[0] : "";
    } catch (err) { status(err.message); }
  }
  decoder.busy = false;
}

// ----- drawing decoded items (images or table rows as bars) --------------------------------------

function pixelsOf(out) {
  if (!out._bytes) out._bytes = Uint8Array.from(atob(out.pixels), (c) => c.charCodeAt(0));
  return out._bytes;
}

function drawItem(canvas, out, i) {
  if (info.view === "bars") return drawBars(canvas, out.values[i]);
  const [c, h, w] = out.shape;
  const bytes = pixelsOf(out), image = new ImageData(w, h), offset = i * h * w * c;
  for (let p = 0; p < h * w; p++) {
    const r = bytes[offset + p * c];
    image.data[4 * p] = r;
    image.data[4 * p + 1] = c === 3 ? bytes[offset + p * c + 1] : r;
    image.data[4 * p + 2] = c === 3 ? bytes[offset + p * c + 2] : r;
    image.data[4 * p + 3] = 255;
  }
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  small.getContext("2d").putImageData(image, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = info.view === "molecule";  // pixels stay pixels; drawings of molecules are smoothed
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function drawBars(canvas, values) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  const [lo, hi] = info.value_range, n = values.length;
  const y = (v) => H - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * H;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.fillStyle = "#1f77b4";
  const bw = W / n;
  values.forEach((v, k) => {
    const top = Math.min(y(v), y(0)), bottom = Math.max(y(v), y(0));
    ctx.fillRect(k * bw + bw * 0.1, top, bw * 0.8, Math.max(bottom - top, 1));
  });
  ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, y(0)); ctx.lineTo(W, y(0)); ctx.stroke();
}

function figure(out, i, caption, size) {  // a small canvas with a caption, for strips and grids
  const box = document.createElement("div");
  box.className = "figure";
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = info.view === "molecule" ? 160 : size || 56;  // a molecule's drawing at its own size
  if (info.view === "bars") canvas.className = "bars";
  drawItem(canvas, out, i);
  box.append(canvas);
  for (const [line, kind] of [[caption, "caption"], [out.text ? out.text[i] : undefined, "caption smiles"]]) {
    if (line === undefined) continue;
    const text = document.createElement("div");
    text.className = kind;
    text.textContent = line;
    box.append(text);
  }
  if (out.text) box.title = out.text[i];
  return box;
}

function labelName(label) {  // a label as shown: its class name where the run recorded names, else the number
  const names = info.map.label_names;
  return names && label >= 0 && label < names.length ? names[label] : String(label);
}

function percentileText(p) {  // the share of the test set whose negative ELBO is at most this one's
  const side = p < 50 ? `more typical than ${(100 - p).toFixed(0)} %` : `less typical than ${p.toFixed(0)} %`;
  return `anomaly percentile ${p.toFixed(1)}: ${side} of the test set`;
}

function fillStrip(element, out, captions) {
  element.replaceChildren(...Array.from({ length: out.n }, (_, i) => figure(out, i, captions ? captions[i] : undefined)));
}

// ----- the map -----------------------------------------------------------------------------------

function project(z) {  // code (L) -> map coordinates [x, y]
  const { mean, directions } = info.map;
  return directions.map((d) => d.reduce((s, dk, k) => s + dk * (z[k] - mean[k]), 0));
}

function unproject(xy, base) {  // map coordinates -> code, the off-plane directions held at `base`
  const { mean, directions } = info.map, along = project(base), z = Float64Array.from(base);
  directions.forEach((d, j) => d.forEach((dk, k) => { z[k] += (xy[j] - along[j]) * dk; }));
  return z;
}

function setupMap() {
  const canvas = $("map"), { x, y } = info.map;
  let [x0, x1, y0, y1] = [Math.min(...x), Math.max(...x), Math.min(...y), Math.max(...y)];
  if (info.model.latent_dim === 1) [y0, y1] = [-1, 1];
  const padX = (x1 - x0) * 0.05 || 1, padY = (y1 - y0) * 0.05 || 1;
  x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
  mapView = { x0, y0, sx: canvas.width / (x1 - x0), sy: canvas.height / (y1 - y0) };
  pointsLayer = document.createElement("canvas");
  pointsLayer.width = canvas.width; pointsLayer.height = canvas.height;
  const ctx = pointsLayer.getContext("2d"), labels = info.map.label;
  const size = x.length > 3000 ? 3 : 5;  // dots: smaller and fainter for a crowded map
  ctx.globalAlpha = x.length > 3000 ? 0.5 : 0.8;
  for (let i = 0; i < x.length; i++) {
    const [px, py] = toPixel([x[i], y[i]]);
    ctx.fillStyle = labels ? PALETTE[((labels[i] % 10) + 10) % 10] : "#1f77b4";
    ctx.fillRect(px - size / 2, py - size / 2, size, size);
  }
  $("map-axes").textContent = `${info.map.axes[0]} across, ${info.map.axes[1]} up` +
    (info.map.method === "pca" ? "; other directions held at the current code" : "");
  if (labels) {
    const seen = [...new Set(labels)].sort((a, b) => a - b);
    $("legend").replaceChildren(...seen.map((l) => {
      const s = document.createElement("span");
      s.style.setProperty("--c", PALETTE[((l % 10) + 10) % 10]);
      s.textContent = labelName(l);
      return s;
    }));
  }
  canvas.addEventListener("pointermove", onMapMove);
  canvas.addEventListener("pointerdown", onMapDown);
  canvas.addEventListener("pointerup", onMapUp);
  canvas.addEventListener("pointerleave", () => { preview = null; drag = null; $("decoded-source").textContent = "current code"; requestDecode(current); drawMap(); });
}

function toPixel([u, v]) { return [(u - mapView.x0) * mapView.sx, $("map").height - (v - mapView.y0) * mapView.sy]; }
function fromPixel([px, py]) { return [px / mapView.sx + mapView.x0, ($("map").height - py) / mapView.sy + mapView.y0]; }

function eventPixel(event) {
  const canvas = $("map"), rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

function drawMap() {
  const canvas = $("map"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(pointsLayer, 0, 0);
  marker(ctx, project(current), "cross", "");  // under the others, its arms reach past them
  picks.forEach((p, k) => marker(ctx, p.xy, "circle", k ? "B" : "A"));
  if (uploaded) marker(ctx, uploaded.xy, "star", "");
  if (preview) marker(ctx, project(preview), "ring", "");
}

function marker(ctx, xy, kind, text) {
  const [px, py] = toPixel(xy);
  ctx.save();
  ctx.lineWidth = 2; ctx.strokeStyle = "#000"; ctx.fillStyle = "#fff";
  ctx.beginPath();
  if (kind === "cross") { ctx.moveTo(px - 14, py); ctx.lineTo(px + 14, py); ctx.moveTo(px, py - 14); ctx.lineTo(px, py + 14); ctx.stroke(); }
  else if (kind === "ring") { ctx.strokeStyle = "#555"; ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke(); }
  else if (kind === "star") {
    for (let k = 0; k < 10; k++) {
      const r = k % 2 ? 4 : 10, a = -Math.PI / 2 + (k * Math.PI) / 5;
      ctx.lineTo(px + r * Math.cos(a), py + r * Math.sin(a));
    }
    ctx.closePath(); ctx.fillStyle = "#ffd700"; ctx.fill(); ctx.stroke();
  } else {
    ctx.arc(px, py, 8, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    ctx.fillStyle = "#000"; ctx.font = "bold 11px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(text, px, py + 0.5);
  }
  ctx.restore();
}

let drag = null;  // {start: [px, py], moved: bool} while a pointer button is down on the map

function onMapMove(event) {
  const z = unproject(fromPixel(eventPixel(event)), current);
  if (drag) {
    const [sx, sy] = drag.start, [px, py] = eventPixel(event);
    drag.moved = drag.moved || Math.hypot(px - sx, py - sy) > 4;
    if (drag.moved) { setCurrent(z); return; }
  }
  preview = z;
  $("decoded-source").textContent = "pointer";
  requestDecode(z);
  drawMap();
}

function onMapDown(event) {
  drag = { start: eventPixel(event), moved: false };
  $("map").setPointerCapture(event.pointerId);
}

function onMapUp(event) {
  if (!drag) return;
  const moved = drag.moved;
  drag = null;
  if (moved) return;
  const [px, py] = eventPixel(event), { x, y, index } = info.map;
  let best = -1, bestD = 8;  // pick the nearest dot within 8 pixels
  for (let i = 0; i < x.length; i++) {
    const [qx, qy] = toPixel([x[i], y[i]]), d = Math.hypot(qx - px, qy - py);
    if (d < bestD) { best = i; bestD = d; }
  }
  if (best >= 0) pickExample(index[best]);
  else setCurrent(unproject(fromPixel([px, py]), current));
}

// ----- the current code: sliders, decode, neighbours ---------------------------------------------

function setupSliders() {
  const { order, score, measure, center, spread, factors } = info.dims;
  $("dims-measure").textContent = measure === "KL" ? "ordered by KL to the prior (nats)" : "ordered by code variance";
  const rows = order.map((d, rank) => {
    const row = document.createElement("div");
    row.className = factors ? "slider factors" : "slider";
    row.hidden = rank >= SLIDERS_SHOWN;
    const name = document.createElement("span");
    name.textContent = `z${d}  ${measure === "KL" ? "KL" : "var"} ${score[rank].toFixed(2)}`;
    if (factors && factors[d]) name.textContent += `  ${factors[d]}`;  // the factor of the data this unit captures
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: center[d] - 4 * spread[d], max: center[d] + 4 * spread[d], step: spread[d] / 100 });
    input.dataset.dim = d;
    input.setAttribute("aria-label", `latent dimension ${d}`);
    const value = document.createElement("output");
    input.addEventListener("input", () => {
      const z = Float64Array.from(current);
      z[d] = Number(input.value);
      setCurrent(z, input);
    });
    row.append(name, input, value);
    return row;
  });
  $("sliders").replaceChildren(...rows);
  if (order.length > SLIDERS_SHOWN) {
    const button = $("all-dims");
    button.hidden = false;
    button.textContent = `Show all ${order.length}`;
    button.addEventListener("click", () => {
      const showAll = button.textContent.startsWith("Show all");
      rows.forEach((row, rank) => { row.hidden = !showAll && rank >= SLIDERS_SHOWN; });
      button.textContent = showAll ? `Show top ${SLIDERS_SHOWN}` : `Show all ${order.length}`;
    });
  }
}

function syncSliders(except) {
  for (const input of $("sliders").querySelectorAll("input")) {
    const v = current[Number(input.dataset.dim)];
    if (input !== except) input.value = v;
    input.nextElementSibling.textContent = v.toFixed(2);
  }
}

let neighbourTimer = null;
function setCurrent(z, fromSlider) {
  current = Float64Array.from(z);
  preview = null;
  $("decoded-source").textContent = "current code";
  syncSliders(fromSlider);
  requestDecode(current);
  drawMap();
  clearTimeout(neighbourTimer);
  neighbourTimer = setTimeout(guarded(loadNeighbours), 150);
}

async function loadNeighbours() {
  const out = await api("/api/neighbours", { z: Array.from(current), k: 8 });
  const captions = out.index.map((i, k) => (out.label ? `label ${labelName(out.label[k])}, ` : "") + `distance ${out.distance[k].toFixed(2)}`);
  fillStrip($("neighbours"), out.images, captions);
}

// ----- examples and interpolation ----------------------------------------------------------------

async function pickExample(index) {
  const example = await api(`/api/example/${index}`);
  picks = [...picks, example].slice(-2);
  $("reset-example").disabled = false;
  renderPicks();
  setCurrent(example.z);
  if (picks.length === 2) await loadInterpolation();
}

function card(title, result) {
  const box = document.createElement("div");
  box.className = "card";
  const head = document.createElement("div");
  head.innerHTML = "<b></b>";
  head.firstChild.textContent = title;
  const pair = document.createElement("div");
  pair.className = "pair";
  pair.append(figure(result.x, 0, "input", 96), figure(result.reconstruction, 0, "reconstruction", 96));
  const numbers = document.createElement("div");
  numbers.textContent = `negative ELBO ${result.neg_elbo.toFixed(2)} nats; ${percentileText(result.percentile)}`;
  box.append(head, pair, numbers);
  return box;
}

function renderPicks() {
  $("picks").replaceChildren(...picks.map((p, k) =>
    card(`${k ? "B" : "A"}: test #${p.index}` + (p.label !== null ? ` (label ${labelName(p.label)})` : ""), p)));
  if (picks.length < 2) $("interpolation").hidden = true;
  drawMap();
}

async function loadInterpolation() {
  const out = await api("/api/interpolate", { a: picks[0].z, b: picks[1].z, steps: 10, context: currentContext });
  fillStrip($("strip-linear"), out.linear);
  fillStrip($("strip-slerp"), out.slerp);
  $("interpolation").hidden = false;
}

// ----- your own input ------------------------------------------------------------------------------

async function encodeInput(body, type) {
  const query = new URLSearchParams();
  if ($("invert").checked && type !== "application/json") query.set("invert", "1");
  if (currentContext !== null) query.set("context", String(currentContext));
  const result = await api("/api/encode" + (query.toString() ? "?" + query : ""), body, type);
  uploaded = result;
  $("input-result").replaceChildren(card("your input", result));
  setCurrent(result.z);
}

function setupInput() {
  if (info.view === "molecule") {  // a molecule model's input: a SMILES typed in
    $("image-input").hidden = true;
    $("smiles-input").hidden = false;
    $("smiles-encode").addEventListener("click", guarded(async () => {
      await encodeInput(JSON.stringify({ smiles: $("smiles").value.trim() }), "application/json");
    }));
    return;
  }
  if (info.view === "bars") {
    $("image-input").hidden = true;
    $("row-input").hidden = false;
    $("row-encode").addEventListener("click", guarded(async () => {
      const values = $("row").value.split(/[\s,]+/).filter((s) => s.length).map(Number);
      await encodeInput(JSON.stringify({ x: values }), "application/json");
    }));
    return;
  }
  $("upload").addEventListener("change", guarded(async () => {
    const file = $("upload").files[0];
    if (file) await encodeInput(file, "application/octet-stream");
  }));
  const [, h, w] = info.model.input_shape, canvas = $("draw"), ctx = canvas.getContext("2d");
  canvas.width = w; canvas.height = h;
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, w, h); };
  clear();
  let last = null;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * w / r.width, (e.clientY - r.top) * h / r.height]; };
  canvas.addEventListener("pointerdown", (e) => { last = at(e); canvas.setPointerCapture(e.pointerId); stroke(last); });
  canvas.addEventListener("pointermove", (e) => { if (last) stroke(at(e)); });
  canvas.addEventListener("pointerup", () => { last = null; guarded(encodeDrawing)(); });
  function stroke(p) {
    ctx.strokeStyle = "#fff"; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.lineWidth = Math.max(1.5, w / 12);
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(p[0] + 0.01, p[1]); ctx.stroke();
    last = p;
  }
  async function encodeDrawing() {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const keep = $("invert").checked;
    $("invert").checked = false;  // the drawing is light on dark already
    try { await encodeInput(blob, "image/png"); } finally { $("invert").checked = keep; }
  }
  $("draw-clear").addEventListener("click", clear);
  $("draw-encode").addEventListener("click", guarded(encodeDrawing));
}

// ----- prior samples --------------------------------------------------------------------------------

async function loadSamples() {
  const temperature = Number($("temperature").value);
  const syntax = info.syntax && $("syntax").checked;
  const out = await api("/api/sample", { n: 16, temperature, seed: sampleSeed++, context: currentContext, syntax });
  fillStrip($("samples"), out);
}

// ----- the class of a conditional model ---------------------------------------------------------------

function setupClass() {
  const m = info.model;
  if (!m.conditional) return;
  currentContext = m.default_class;
  const select = $("class");
  select.replaceChildren(...m.class_names.map((name, c) => new Option(name, String(c), false, c === currentContext)));
  $("class-panel").hidden = false;
  select.addEventListener("change", guarded(async () => {
    currentContext = Number(select.value);
    if (currentZ) requestDecode(currentZ);
    if (picks.length === 2) await loadInterpolation();
    await loadSamples();
  }));
}

// ----- the context columns of a conditional model ------------------------------------------------------

function setupContextColumns() {
  const columns = info.model.context_columns;
  if (!columns || !columns.length) return;
  currentContext = columns.map((c) => c.value);  // in the columns' own units, as the API takes them
  const shown = (v) => String(Number(Number(v).toPrecision(4)));
  const redecode = guarded(async () => {
    if (currentZ) requestDecode(currentZ);
    if (picks.length === 2) await loadInterpolation();
    await loadSamples();
  });
  const sliders = columns.map((c, j) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: c.low, max: c.high, step: (c.high - c.low) / 100 || 1, value: c.value });
    input.setAttribute("aria-label", c.name);
    const value = document.createElement("output");
    value.textContent = shown(c.value);
    input.addEventListener("input", () => { currentContext[j] = Number(input.value); value.textContent = shown(input.value); });
    input.addEventListener("change", redecode);
    label.append(`${c.name} `, input, " ", value);
    return label;
  });
  $("context-panel").replaceChildren("decode at", ...sliders);
  $("context-panel").hidden = false;
}

// ----- start ----------------------------------------------------------------------------------------

async function start() {
  info = await api("/api/info");
  document.body.dataset.view = info.view;
  $("syntax-choice").hidden = !info.syntax;  // a SMILES model: samples may keep to SMILES syntax  // the stylesheet draws molecules unpixelated, larger
  const m = info.model;
  $("model-line").textContent = `${info.run}: ${m.deterministic ? "autoencoder" : m.kind.toUpperCase()}, ${m.arch}, ` +
    `${m.likelihood} likelihood, ${m.latent_dim}-D latent, input ${m.input_shape.join("×")}; ` +
    `map of ${info.map.x.length} ${info.map.split === "valid" ? "validation" : "test"} codes`;
  if (info.view === "bars") {
    $("decoded").width = 360; $("decoded").height = 200;
    $("decoded").className = "bars";
    $("decoded").style.height = "200px"; $("decoded").style.width = "280px";
  }
  setupMap();
  setupSliders();
  setupInput();
  setupClass();
  setupContextColumns();
  $("reset-prior").addEventListener("click", () => setCurrent(info.dims.center));
  $("reset-example").addEventListener("click", () => { if (picks.length) setCurrent(picks[picks.length - 1].z); });
  $("clear-picks").addEventListener("click", () => { picks = []; $("reset-example").disabled = true; renderPicks(); });
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
  $("sample").addEventListener("click", guarded(loadSamples));
  $("syntax").addEventListener("change", guarded(loadSamples));
  setCurrent(info.dims.center);
  await loadSamples();
  document.body.dataset.ready = "1";  // for tests and screenshots: the first view is drawn
}

guarded(start)();
