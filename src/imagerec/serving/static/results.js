// "What is in this photo?": dropped or chosen photos become result cards with
// the model's answer as bars, a description line (POST /v1/describe) and a
// "Why?" toggle that shows the heat map of what drove the answer (POST /v1/explain).
import { $, MAX_PER_REQUEST, acceptDrops, api, el, emit, errorText, plural, say } from "./api.js";
import { drawAnswer } from "./bars.js";
import { current, models } from "./models.js";

const TOP_K = 5;
const results = () => $("#results");
const status = () => $("#status");
let cardNumber = 0;

function resultCard(file) {
  const number = ++cardNumber;
  const image = el("img", { alt: file.name, src: URL.createObjectURL(file) });
  // The browser may not show every format the server reads (TIFF, or not an image at all).
  image.addEventListener("error", () => image.classList.add("unshown"), { once: true });
  const name = el("div", { class: "name" }, file.name);
  const body = el("div", { class: "predictions" }, "recognising…");
  const description = el("p", { class: "description", hidden: true });
  const why = el("button", { type: "button", class: "why-toggle secondary small", "aria-expanded": "false",
    "aria-controls": `why-${number}`, hidden: true }, "Why?");
  const whyBox = el("figure", { id: `why-${number}`, class: "why", hidden: true });
  const item = el("li", { class: "result pending" }, image, el("div", { class: "result-text" }, name, body, description, why), whyBox);
  return { item, body, name, description, why, whyBox, file, image };
}

function fill(card, result, model) {
  card.item.classList.remove("pending");
  if (model) card.name.textContent += ` · ${model}`;
  card.body.replaceChildren();
  if (result.error) {
    card.item.classList.add("failed");
    card.body.append(el("div", { class: "error" }, result.error.message));
    return;
  }
  card.item.classList.add("done");
  drawAnswer(card.body, result);
  card.result = result;
  card.model = model;
  card.why.hidden = false;
  card.why.addEventListener("click", () => toggleWhy(card));
}

// The label a heat map explains: the answer, or the closest class of an unknown one.
function explainedLabel(result) {
  if (result.label != null && !result.unknown) return result.label;
  if (result.closest) return result.closest.label;
  return result.predictions && result.predictions.length ? result.predictions[0].label : null;
}

async function toggleWhy(card) {
  const open = card.why.getAttribute("aria-expanded") !== "true";
  card.why.setAttribute("aria-expanded", String(open));
  card.whyBox.hidden = !open;
  if (!open || card.whyBox.dataset.loaded) return;
  card.whyBox.dataset.loaded = "1";
  card.whyBox.replaceChildren(el("figcaption", {}, "Finding what the model looked at…"));
  const label = explainedLabel(card.result);
  const query = new URLSearchParams({ model: card.model });
  if (label) query.set("label", label);
  const form = new FormData();
  form.append("file", card.file, card.file.name);
  const reply = await api(`/v1/explain?${query}`, { method: "POST", body: form });
  const explained = reply.ok && reply.body && Array.isArray(reply.body.results) ? reply.body.results[0] : null;
  if (!explained || explained.error) {
    delete card.whyBox.dataset.loaded; // try again next time
    const message = explained && explained.error ? explained.error.message : errorText(reply);
    card.whyBox.replaceChildren(el("figcaption", { class: "error" }, `No heat map: ${message}`));
    return;
  }
  const how = explained.method === "grad-cam" ? "Grad-CAM" : "occlusion: parts of the photo hidden in turn";
  const [x, y] = explained.peak || [null, null];
  const where = x == null ? "" : ` It looked hardest around (${x}, ${y}) of ${explained.width}×${explained.height}.`;
  card.whyBox.replaceChildren(
    el("img", { class: "overlay", src: explained.overlay, alt: `Heat map of where the model looked to say “${explained.label}”` }),
    el("figcaption", {}, `Warm colours drove “${explained.label}” (${how}).${where}`),
  );
  const overlay = card.whyBox.querySelector("img");
  overlay.addEventListener("load", () => card.whyBox.scrollIntoView({ block: "nearest" }), { once: true });
}

// The description line under each recognised photo; silent when the server has none.
// It comes from a general (not taught) model when one is served: a model taught two
// classes would describe a parrot as the closer of its two.
async function describe(cards, chosen) {
  const general = [...models.values()].find((info) => !info.learned);
  const model = general ? general.name : chosen;
  const form = new FormData();
  for (const card of cards) form.append("file", card.file, card.file.name);
  const reply = await api(`/v1/describe?${new URLSearchParams({ model })}`, { method: "POST", body: form });
  if (!reply.ok || !reply.body || !Array.isArray(reply.body.results)) return;
  reply.body.results.forEach((described, index) => {
    const card = cards[index];
    const text = described && !described.error && (described.description || described.title);
    if (!card || !text) return;
    card.description.textContent = text;
    card.description.hidden = false;
  });
}

function showResultsBar() {
  const count = results().children.length;
  $("#results-bar").hidden = count === 0;
  $("#results-count").textContent = plural(count, "photo");
}

function clear() {
  for (const image of results().querySelectorAll("img:not(.overlay)")) URL.revokeObjectURL(image.src);
  results().replaceChildren();
  say(status(), "");
  showResultsBar();
}

export async function recognise(files) {
  const images = [...files].filter((file) => file.size > 0);
  if (!images.length) return;
  const cards = images.map(resultCard);
  results().prepend(...cards.map((card) => card.item));
  results().scrollTop = 0;
  showResultsBar();
  say(status(), `Recognising ${plural(images.length, "photo")}…`);
  const model = current();
  let failures = 0;
  for (let start = 0; start < images.length; start += MAX_PER_REQUEST) {
    const chunk = cards.slice(start, start + MAX_PER_REQUEST);
    const form = new FormData();
    for (const card of chunk) form.append("file", card.file, card.file.name);
    const query = new URLSearchParams({ top_k: TOP_K });
    if (model) query.set("model", model);
    const reply = await api(`/v1/predict?${query}`, { method: "POST", body: form });
    const answered = reply.body && Array.isArray(reply.body.results) ? reply.body.results : null;
    const recognised = [];
    chunk.forEach((card, offset) => {
      const result = answered ? answered[offset] : { error: { message: errorText(reply) } };
      if (result.error) failures += 1;
      else recognised.push(card);
      fill(card, result, answered ? reply.body.model : "");
    });
    if (recognised.length) describe(recognised, answered ? reply.body.model : model);
  }
  const shown = cards.filter((card) => card.item.classList.contains("done"));
  if (shown.length) emit("photo", shown[shown.length - 1].file);
  say(status(), failures ? `${failures} of ${images.length} could not be recognised.` : "", failures > 0);
}

export function setUp() {
  const fileInput = $("#file-input");
  fileInput.addEventListener("change", () => {
    const files = [...fileInput.files];
    fileInput.value = "";
    recognise(files);
  });
  acceptDrops($("#drop"), recognise);
  $("#clear-results").addEventListener("click", clear);
}
