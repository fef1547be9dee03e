// imagerec web page: pick or drop photos, see the top labels; teach a new class.
// Plain JavaScript talking to the same server's JSON API; no build step.
"use strict";

const MAX_PER_REQUEST = 16; // the server's default limit of images per request
const TOP_K = 5;

const $ = (selector) => document.querySelector(selector);
const modelSelect = $("#model");
const results = $("#results");
const status = $("#status");

function apiKey() {
  return localStorage.getItem("imagerec-key") || "";
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("x-api-key", apiKey());
  const reply = await fetch(path, { ...options, headers });
  let body = null;
  try {
    body = await reply.json();
  } catch (_) {
    body = null;
  }
  if (reply.status === 401) $("#key-panel").hidden = false;
  return { ok: reply.ok, status: reply.status, body };
}

function errorText(reply) {
  if (reply.body && reply.body.error && reply.body.error.message) return reply.body.error.message;
  return `the server answered ${reply.status}`;
}

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// -- models ---------------------------------------------------------------------

async function loadModels(select) {
  const reply = await api("/v1/models");
  if (!reply.ok) {
    say(status, `Cannot list the models: ${errorText(reply)}`, true);
    return;
  }
  const previous = select || modelSelect.value;
  modelSelect.replaceChildren();
  for (const model of reply.body.models) {
    const option = document.createElement("option");
    option.value = model.name;
    // "taught (3 learned classes)", never "taught (taught, 3 classes)".
    const kind = model.learned
      ? `${model.labels} learned class${model.labels === 1 ? "" : "es"}`
      : `${model.labels} labels`;
    option.textContent = `${model.name} (${kind})`;
    modelSelect.append(option);
  }
  if (previous && [...modelSelect.options].some((o) => o.value === previous)) modelSelect.value = previous;
}

// -- recognising --------------------------------------------------------------

// The answer above the bars: the label, "not sure" under the server's sure
// level, or "unknown" with the taught class that came closest. The bars
// below are the classes' own probabilities (they never add up past 100 %).
function answerLine(result) {
  const line = document.createElement("div");
  line.className = "answer" + (result.unknown ? " unknown" : result.sure === false ? " unsure" : "");
  if (result.unknown) {
    line.textContent = result.closest ? `unknown — closest: ${result.closest.label}` : "unknown";
    if (result.match != null) line.title = `match ${result.match.toFixed(3)} is under the threshold ${result.threshold.toFixed(3)}`;
  } else {
    line.textContent = result.sure === false ? `${result.label} — not sure` : result.label;
  }
  return line;
}

function predictionRow(prediction) {
  const row = document.createElement("div");
  row.className = "prediction";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = prediction.label;
  const percent = document.createElement("span");
  percent.className = "percent";
  const value = Math.max(0, Math.min(1, prediction.score));
  percent.textContent = `${(value * 100).toFixed(1)} %`;
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${(value * 100).toFixed(1)}%`;
  bar.append(fill);
  row.append(label, percent, bar);
  return row;
}

function resultCard(file) {
  const item = document.createElement("li");
  item.className = "result pending";
  const image = document.createElement("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  // The browser may not show every format the server reads (TIFF, or not an image at all).
  image.addEventListener("error", () => image.classList.add("unshown"), { once: true });
  const text = document.createElement("div");
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = file.name;
  const body = document.createElement("div");
  body.className = "predictions";
  body.textContent = "recognising…";
  text.append(name, body);
  item.append(image, text);
  return { item, body, name };
}

function fill(card, result, model) {
  card.item.classList.remove("pending");
  if (model) card.name.textContent += ` · ${model}`;
  card.body.replaceChildren();
  if (result.error) {
    card.item.classList.add("failed");
    const message = document.createElement("div");
    message.className = "error";
    message.textContent = result.error.message;
    card.body.append(message);
    return;
  }
  card.item.classList.add("done");
  if (result.label != null) card.body.append(answerLine(result));
  for (const prediction of result.predictions) card.body.append(predictionRow(prediction));
}

function showResultsBar() {
  const count = results.children.length;
  $("#results-bar").hidden = count === 0;
  $("#results-count").textContent = `${count} photo${count === 1 ? "" : "s"}`;
}

$("#clear-results").addEventListener("click", () => {
  for (const image of results.querySelectorAll("img")) URL.revokeObjectURL(image.src);
  results.replaceChildren();
  say(status, "");
  showResultsBar();
});

async function recognise(files) {
  const images = [...files].filter((file) => file.size > 0);
  if (!images.length) return;
  const cards = images.map(resultCard);
  results.prepend(...cards.map((card) => card.item));
  results.scrollTop = 0;
  showResultsBar();
  say(status, `Recognising ${images.length} photo${images.length > 1 ? "s" : ""}…`);
  const model = modelSelect.value;
  let failures = 0;
  for (let start = 0; start < images.length; start += MAX_PER_REQUEST) {
    const chunk = images.slice(start, start + MAX_PER_REQUEST);
    const form = new FormData();
    for (const file of chunk) form.append("file", file, file.name);
    const query = new URLSearchParams({ top_k: TOP_K });
    if (model) query.set("model", model);
    let reply;
    try {
      reply = await api(`/v1/predict?${query}`, { method: "POST", body: form });
    } catch (error) {
      reply = { ok: false, status: 0, body: { error: { message: `network error: ${error.message}` } } };
    }
    const answered = reply.body && Array.isArray(reply.body.results) ? reply.body.results : null;
    chunk.forEach((_, offset) => {
      const result = answered ? answered[offset] : { error: { message: errorText(reply) } };
      if (result.error) failures += 1;
      fill(cards[start + offset], result, answered ? reply.body.model : "");
    });
  }
  say(status, failures ? `${failures} of ${images.length} could not be recognised.` : "", failures > 0);
}

const drop = $("#drop");
const fileInput = $("#file-input");
fileInput.addEventListener("change", () => {
  recognise(fileInput.files);
  fileInput.value = "";
});
for (const name of ["dragenter", "dragover"]) {
  drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  drop.addEventListener(name, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  recognise(event.dataTransfer.files);
});

// -- teaching -----------------------------------------------------------------

$("#teach-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const teachStatus = $("#teach-status");
  const button = $("#teach-button");
  const label = $("#teach-label").value.trim();
  const files = [...$("#teach-files").files];
  const model = $("#teach-model").value.trim() || "taught";
  if (!label || !files.length) {
    say(teachStatus, "Give the new thing a name and at least one photo.", true);
    return;
  }
  const form = new FormData();
  form.append("label", label);
  form.append("model", model);
  for (const file of files.slice(0, MAX_PER_REQUEST)) form.append("file", file, file.name);
  button.disabled = true;
  say(teachStatus, `Learning “${label}” from ${files.length} photo${files.length > 1 ? "s" : ""}…`);
  try {
    const reply = await api("/v1/teach", { method: "POST", body: form });
    if (!reply.ok) {
      say(teachStatus, `Could not learn it: ${errorText(reply)}`, true);
      return;
    }
    await loadModels(reply.body.model.name);
    taughtModel = reply.body.model.name;
    $("#teach-downloads").hidden = false;
    say(teachStatus, `Learned “${label}”. Model ${reply.body.model.name} now knows: ${reply.body.classes.join(", ")}. Drop a photo above to try it.`);
    $("#teach-label").value = "";
    $("#teach-files").value = "";
  } catch (error) {
    say(teachStatus, `Could not learn it: network error: ${error.message}`, true);
  } finally {
    button.disabled = false;
  }
});

// Download the taught model: its .imagerec file, or exported to TFLite / ONNX.
let taughtModel = "";
for (const button of document.querySelectorAll("#teach-downloads button")) {
  button.addEventListener("click", async () => {
    const format = button.dataset.format;
    const teachStatus = $("#teach-status");
    if (!taughtModel) {  // the buttons are hidden until then; never ask for /v1/models//file
      say(teachStatus, "Teach something first: there is no taught model to keep yet.", true);
      return;
    }
    button.disabled = true;
    say(teachStatus, `Preparing ${taughtModel}.${format}…`);
    try {
      const headers = apiKey() ? { "x-api-key": apiKey() } : {};
      const path = `/v1/models/${encodeURIComponent(taughtModel)}/file?format=${format}`;
      const reply = await fetch(path, { headers });
      if (!reply.ok) {
        let body = null;
        try { body = await reply.json(); } catch (_) { body = null; }
        say(teachStatus, `Could not download it: ${errorText({ status: reply.status, body })}`, true);
        return;
      }
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await reply.blob());
      link.download = `${taughtModel}.${format}`;
      document.body.append(link);
      link.click();
      link.remove();
      say(teachStatus, `Downloaded ${taughtModel}.${format}.`);
    } catch (error) {
      say(teachStatus, `Could not download it: network error: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  });
}

// -- API key ------------------------------------------------------------------

$("#key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  localStorage.setItem("imagerec-key", $("#key").value.trim());
  $("#key").value = "";
  $("#key-panel").hidden = true;
  say(status, "");
  await loadModels();
});

loadModels();
