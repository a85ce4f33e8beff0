// spml_rs annotator page: keyboard-first single-positive labelling.
// The server decides everything (ids, candidates, next image); the page only shows
// items and posts choices. Each choice is on disk before the next image appears.
"use strict";

let item = null;   // the item on screen (see annotator/session.py: AnnotationSession.item)
let busy = false;  // one request at a time: a key pressed meanwhile is ignored, never misapplied
// Action to next-image-shown times (ms), read by the tests and the latency benchmark.
const latencies = [];
window.annotatorLatencies = latencies;

const $ = (id) => document.getElementById(id);

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

async function run(action, timed) {
  if (busy) return;
  busy = true;
  const start = performance.now();
  try {
    const next = await action();
    say("");
    await show(next, timed ? start : null);
  } catch (error) {
    say(error.message);
  } finally {
    busy = false;
  }
}

async function show(next, start) {
  const image = $("image");
  const problem = await decodeImage(next);
  if (problem === null) {
    image.src = next.image_url;
  } else {
    image.removeAttribute("src");  // no broken-image icon, no stale picture
  }
  const error = $("image-error");
  error.hidden = problem === null;
  error.textContent = problem ?? "";
  image.classList.toggle("pixelated", next.pixelated);
  item = next;
  render();
  image.dataset.imageId = next.image_id;
  image.dataset.batch = String(next.batch);
  image.dataset.numBatches = String(next.num_batches);
  if (start !== null) {
    requestAnimationFrame(() => latencies.push(performance.now() - start));
  }
  if (next.prefetch) new Image().src = next.prefetch;
}

// Decode off-screen first so the swap is instant and the old picture never flickers.
// null when the picture is ready; otherwise what the page shows in its place: the
// server's message (e.g. a corrupt LMDB value, with its key) or the browser's failure.
async function decodeImage(next) {
  const loader = new Image();
  loader.src = next.image_url;
  try {
    await loader.decode();
    return null;
  } catch {
    return `Image ${next.image_id} cannot be shown: ${await imageError(next.image_url)} ` +
      "(S skips it).";
  }
}

async function imageError(url) {
  try {
    const response = await fetch(url);
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      return data.error || `HTTP ${response.status} ${response.statusText}`;
    }
    const type = response.headers.get("Content-Type");
    return `the browser cannot decode its ${type} data (${(await response.blob()).size} bytes)`;
  } catch (error) {
    return error.message;
  }
}

function render() {
  $("image-id").textContent = item.image_id;
  $("position").textContent = `#${item.pos + 1} of ${item.progress.total}`;
  const box = $("candidates");
  box.replaceChildren();
  item.candidates.forEach((name, k) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "candidate";
    button.dataset.className = name;
    if (item.state && item.state.action === "label" && item.state.class_name === name) {
      button.classList.add("current");
    }
    const key = document.createElement("kbd");
    key.textContent = String(k + 1);
    const label = document.createElement("span");
    label.textContent = name;
    button.append(key, label);
    button.addEventListener("click", () => choose(k));
    box.append(button);
  });
  const first = item.batch * 4 + 1;
  const last = first + item.candidates.length - 1;
  $("batch-info").textContent =
    `Batch ${item.batch + 1} of ${item.num_batches} (classes ${first}–${last}); ` +
    "N shows the next four.";
  renderState();
  renderProgress(item.progress);
}

function renderState() {
  const box = $("state");
  box.replaceChildren();
  if (!item.state) return;
  const span = document.createElement("span");
  const { action, class_name: name, annotator } = item.state;
  span.className = action;
  span.textContent = action === "label" ? `Labelled: ${name}` : "Skipped";
  box.append(span, ` by ${annotator}`);
}

function renderProgress(p) {
  $("bar-fill").style.width = `${(100 * p.done) / p.total}%`;
  let text = `${p.done} / ${p.total} done`;
  if (p.per_minute) text += ` · ${p.per_minute.toFixed(1)} / min`;
  if (p.eta_s !== null && p.done < p.total) text += ` · ~${duration(p.eta_s)} left`;
  text += ` · ${p.annotator}`;
  $("progress-text").textContent = text;
  if (p.done === p.total) {
    say("All images are annotated. The label file is complete; arrows review them.", "done");
  }
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function say(text, kind = "") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
}

function choose(k) {
  if (!item || k >= item.candidates.length) return;
  const body = { image_id: item.image_id, class_name: item.candidates[k], batch: item.batch };
  run(() => api("POST", "/api/label", body), true);
}

function nextBatch() {
  if (!item) return;
  const batch = (item.batch + 1) % item.num_batches;
  run(() => api("GET", `/api/item?pos=${item.pos}&batch=${batch}`), false);
}

function skip() {
  if (item) run(() => api("POST", "/api/skip", { image_id: item.image_id }), true);
}

function undo() {
  run(() => api("POST", "/api/undo", {}), true);
}

function move(step) {
  if (item) run(() => api("GET", `/api/item?pos=${item.pos + step}`), true);
}

const KEYS = {
  1: () => choose(0), 2: () => choose(1), 3: () => choose(2), 4: () => choose(3),
  n: nextBatch, s: skip, u: undo, ArrowLeft: () => move(-1), ArrowRight: () => move(1),
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;  // keep browser shortcuts
  const handler = KEYS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!handler) return;
  event.preventDefault();
  handler();
});

window.addEventListener("DOMContentLoaded", () => {
  $("next-batch").addEventListener("click", nextBatch);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  run(() => api("GET", "/api/resume"), false);
});
