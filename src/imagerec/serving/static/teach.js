// Teaching: the taught model being shaped (its "card" from the server:
// classes, example thumbnails, the held-out estimate) and every change to it,
// each one call to the /v1/teach routes answered with the new card.
import { $, MAX_PER_REQUEST, api, emit, errorText, filePicker, plural, say } from "./api.js";
import { classCard, confirmButton, updateCard } from "./classes.js";
import { loadModels, models } from "./models.js";
import { showQuality } from "./quality.js";

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const taught = { model: "taught", card: null, pending: [] };
const cards = new Map(); // label -> class card on the page
let lessons = Promise.resolve(); // one change at a time, in the order asked
let chosen = []; // photos chosen in the "Add a class" form

const status = () => $("#teach-status");
const path = (...parts) => `/v1/teach/${parts.map(encodeURIComponent).join("/")}`;

export function modelName() {
  return taught.model;
}

function queue(job) {
  lessons = lessons.then(job, job);
  return lessons;
}

// The server's card, or one made from /v1/teach's older answer (no thumbnails).
function cardOf(body) {
  if (body.card) return body.card;
  return {
    model: body.model.name,
    kept: false,
    estimate: null,
    classes: body.classes.map((label) => ({ label, count: (body.examples || {})[label] || 0, examples: [] })),
  };
}

const actions = {
  add: (label, files, options = {}) => queue(() => addExamples(label, files, options)),
  removeExample: (id) => queue(() => change("DELETE", path(taught.model, "examples", id), null, "Removed the example.")),
  rename: (label, name) => queue(() => rename(label, name)),
  removeClass: (label) => queue(() => removeClass(label)),
};

// Show `card` (or no model at all): the class cards, the estimate, the keep panel.
function show(card) {
  taught.card = card;
  const classes = card ? card.classes : [];
  const known = new Set(classes.map((cls) => cls.label));
  taught.pending = taught.pending.filter((label) => !known.has(label));
  const wanted = [...classes, ...taught.pending.map((label) => ({ label, count: 0, examples: [] }))];
  const list = $("#classes");
  const keep = new Set(wanted.map((cls) => cls.label));
  for (const [label, view] of cards) {
    if (!keep.has(label)) {
      view.dispose();
      view.element.remove();
      cards.delete(label);
    }
  }
  const ordered = wanted.map((cls) => {
    let view = cards.get(cls.label);
    if (view) updateCard(view, cls, actions);
    else {
      view = classCard(cls, actions);
      cards.set(cls.label, view);
    }
    return view.element;
  });
  // Reorder only when needed: moving a card would end a burst held on it.
  if (ordered.some((element, index) => list.children[index] !== element)) list.replaceChildren(...ordered);
  $("#classes-empty").hidden = wanted.length > 0;
  const remove = $("#delete-model");
  if (remove) remove.hidden = !card; // nothing on the server to delete yet
  showQuality(card, taught.model);
  emit("card", card);
}

async function addExamples(label, files, { burst = false } = {}) {
  const model = taught.model;
  let reply = null;
  for (let start = 0; start < files.length; start += MAX_PER_REQUEST) {
    const form = new FormData();
    form.append("label", label);
    form.append("model", model);
    for (const file of files.slice(start, start + MAX_PER_REQUEST)) form.append("file", file, file.name);
    if (!burst) say(status(), `Learning “${label}” from ${plural(files.length, "photo")}…`);
    reply = await api("/v1/teach", { method: "POST", body: form });
    if (!reply.ok) {
      say(status(), `Could not learn it: ${errorText(reply)}`, true);
      return false;
    }
  }
  const body = reply.body;
  if (!models.has(model) || $("#model").value !== model) await loadModels(model);
  else await loadModels();
  show(cardOf(body));
  say(status(), `Learned “${label}”. Model ${body.model.name} now knows: ${body.classes.join(", ")}.`);
  return true;
}

// DELETE/PATCH a part of the model; the answer is the new card (or {deleted}).
async function change(method, url, json, done) {
  const reply = await api(url, json === null ? { method } : { method, json });
  if (!reply.ok) {
    say(status(), `Could not change it: ${errorText(reply)}`, true);
    return false;
  }
  if (reply.body && reply.body.deleted) {
    taught.card = null;
    await loadModels();
    show(null);
  } else {
    await loadModels();
    show(reply.body);
  }
  say(status(), done);
  return true;
}

async function rename(label, name) {
  // The same card stays on the page under its new name (and keeps the keyboard focus).
  const card = cards.get(label);
  const move = (from, to) => {
    if (card && cards.get(from) === card && !cards.has(to)) {
      cards.delete(from);
      cards.set(to, card);
    }
  };
  move(label, name);
  if (taught.pending.includes(label)) {
    taught.pending = taught.pending.map((pending) => (pending === label ? name : pending));
    show(taught.card);
    return;
  }
  if (!(await change("PATCH", path(taught.model, "classes", label), { label: name }, `Renamed “${label}” to “${name}”.`))) {
    move(name, label);
    show(taught.card);
  }
}

async function removeClass(label) {
  if (taught.pending.includes(label)) {
    taught.pending = taught.pending.filter((pending) => pending !== label);
    show(taught.card);
    return;
  }
  await change("DELETE", path(taught.model, "classes", label), null, `Deleted the class “${label}”.`);
}

// Switch the page to the taught model `name` (empty when it does not exist yet).
export async function openModel(name) {
  taught.model = name;
  taught.pending = [];
  $("#teach-model").value = name;
  const reply = await api(path(name));
  show(reply.ok && reply.body && reply.body.classes ? reply.body : null);
}

function freshName() {
  for (let number = 2; ; number += 1) {
    const name = `taught-${number}`;
    if (!models.has(name)) return name;
  }
}

async function openFile(file) {
  let name = file.name.replace(/\.imagerec$/i, "").replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 60);
  if (!NAME.test(name)) name = "opened";
  // Into the model being started (New model), else under the file's name if it is free.
  if (!taught.card && !models.has(taught.model)) name = taught.model;
  else if (models.has(name)) name = freshName();
  say(status(), `Opening ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  const reply = await api(path(name, "open"), { method: "POST", body: form });
  if (!reply.ok) {
    say(status(), `Could not open ${file.name}: ${errorText(reply)}`, true);
    return;
  }
  taught.model = name;
  taught.pending = [];
  $("#teach-model").value = name;
  await loadModels(name);
  show(reply.body);
  say(status(), `Opened ${file.name} as model ${name}: ${reply.body.classes.map((cls) => cls.label).join(", ")}.`);
}

async function submitClass(event) {
  event.preventDefault();
  const label = $("#teach-label").value.trim();
  const model = $("#teach-model").value.trim() || "taught";
  if (!label) {
    say(status(), "Give the new class a name.", true);
    $("#teach-label").focus();
    return;
  }
  if (!NAME.test(model)) {
    say(status(), "The model name must be letters, digits, '_', '.' or '-' (at most 64).", true);
    return;
  }
  if (model !== taught.model) await openModel(model);
  const files = chosen;
  if (!files.length) {
    // No photos yet: the class waits on the page for its first examples (camera or files).
    if (!cards.has(label)) taught.pending.push(label);
    show(taught.card);
    say(status(), `Added “${label}”: give it examples with the camera or some photos.`);
  } else {
    const button = $("#teach-button");
    button.disabled = true;
    try {
      if (!(await actions.add(label, files))) return;
    } finally {
      button.disabled = false;
    }
  }
  $("#teach-label").value = "";
  setChosen([]);
}

function setChosen(files) {
  chosen = files;
  $("#teach-chosen").textContent = files.length ? `${plural(files.length, "photo")} chosen` : "no photos chosen";
}

export function setUp() {
  const picker = filePicker({ id: "teach-files", text: "Choose photos", onfiles: setChosen });
  $("#teach-files-slot").replaceWith(picker.label);
  setChosen([]);
  $("#teach-form").addEventListener("submit", submitClass);
  $("#teach-model").addEventListener("change", () => {
    const name = $("#teach-model").value.trim();
    if (NAME.test(name) && name !== taught.model) openModel(name);
  });
  $("#new-model").addEventListener("click", async () => {
    await openModel(freshName());
    say(status(), `New model ${taught.model}: add its first class.`);
    $("#teach-label").focus();
  });
  const opener = filePicker({ id: "open-file", text: "Open .imagerec…", accept: ".imagerec", multiple: false,
    onfiles: (files) => queue(() => openFile(files[0])) });
  $("#open-file-slot").replaceWith(opener.label);
  const remove = confirmButton("Delete model", "Delete it? Press again", { id: "delete-model" }, () =>
    queue(async () => {
      const name = taught.model;
      if (!taught.card) {
        taught.pending = [];
        show(null);
        return;
      }
      if (await change("DELETE", path(name), null, `Deleted the model ${name}.`)) taught.pending = [];
    }),
  );
  $("#delete-model-slot").replaceWith(remove);
  remove.hidden = true;
  openModel(taught.model);
}
