// "How good is it?" (the held-out estimate of the taught model and the
// confusions that matter) and "Keep it" (download .imagerec / .onnx / .tflite,
// keep on the server). Both follow the taught model's card.
import { $, api, download, el, errorText, plural, say } from "./api.js";

let model = "";
let card = null;

function percent(value) {
  return `${Math.round(value * 100)} %`;
}

function classRow(row) {
  const share = row.of ? row.correct / row.of : 0;
  const fill = el("span");
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return el("li", { class: "prediction" },
    el("span", { class: "label" }, row.label),
    el("span", { class: "percent" }, `${row.correct} of ${row.of}`),
    el("div", { class: "bar", role: "presentation" }, fill));
}

function showEstimate() {
  const box = $("#estimate");
  const estimate = card && card.estimate;
  if (!estimate) {
    const classes = card ? card.classes.length : 0;
    const enough = card ? card.classes.filter((cls) => cls.count >= 2).length >= 2 : false;
    const why = !classes ? "Teach a class or two: how well the model tells them apart shows here."
      : enough ? "No estimate yet: the server holds no pictures of these examples to test with. Add a few to see one."
        : "Give at least two classes two examples each to see how well it tells them apart.";
    box.replaceChildren(el("p", { class: "hint" }, why));
    return;
  }
  const method = estimate.method === "leave-one-out" ? "each example left out in turn and recognised by the rest" : estimate.method;
  const confusions = estimate.confusions || [];
  box.replaceChildren(
    el("p", { class: "score" }, el("strong", { id: "estimate-accuracy" }, percent(estimate.accuracy)),
      ` of ${plural(estimate.examples, "example")} recognised right (${method}).`),
    el("ul", { class: "per-class", "aria-label": "Right per class" }, ...(estimate.per_class || []).map(classRow)),
    confusions.length
      ? el("div", {}, el("h3", {}, "What it mixes up"),
        el("ul", { class: "confusions" }, ...confusions.map((confusion) => el("li", {}, confusion.text))))
      : el("p", { class: "hint" }, "Nothing mixed up: every example was recognised as its own class."),
  );
}

function showKeep() {
  const taught = card && card.classes.length > 0;
  $("#teach-downloads").hidden = !taught;
  if (!taught) return;
  const keep = $("#keep-button");
  keep.disabled = !!card.kept;
  keep.classList.toggle("kept", !!card.kept);
  keep.textContent = card.kept ? "Kept on this server ✓" : "Keep on this server";
}

export function showQuality(newCard, newModel) {
  if (newModel !== model) say($("#keep-status"), "");
  card = newCard;
  model = newModel;
  showEstimate();
  showKeep();
}

async function downloadAs(button) {
  const format = button.dataset.format;
  const status = $("#keep-status");
  if (!card) { // the buttons are hidden until then; never ask for /v1/models//file
    say(status, "Teach something first: there is no taught model to keep yet.", true);
    return;
  }
  button.disabled = true;
  say(status, `Preparing ${model}.${format}…`);
  try {
    const reply = await download(`/v1/models/${encodeURIComponent(model)}/file?format=${format}`, `${model}.${format}`);
    if (reply.ok) say(status, `Downloaded ${model}.${format}.`);
    else say(status, `Could not download it: ${errorText(reply)}`, true);
  } finally {
    button.disabled = false;
  }
}

async function keepOnServer() {
  const status = $("#keep-status");
  const reply = await api(`/v1/teach/${encodeURIComponent(model)}/keep`, { method: "POST" });
  if (!reply.ok) {
    say(status, `Not kept: ${errorText(reply)}`, true);
    return;
  }
  card = reply.body;
  showKeep();
  say(status, `Kept: ${model} is saved on the server after every change and served again after a restart.`);
}

export function setUp() {
  for (const button of document.querySelectorAll("#teach-downloads button[data-format]")) {
    button.addEventListener("click", () => downloadAs(button));
  }
  $("#keep-button").addEventListener("click", keepOnServer);
  showQuality(null, "");
}
