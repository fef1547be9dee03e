// Each taught class as a card: its name, count and example thumbnails, and
// the ways to change it (add photos by choosing or dropping them, record a
// burst from the camera, remove one example, rename, delete). Cards are
// updated in place, so a burst being recorded is never interrupted by the
// model changing under it.
import { acceptDrops, el, filePicker, on, plural } from "./api.js";
import * as camera from "./camera.js";

const BURST_BATCH = 8; // frames sent to /v1/teach at a time while recording
let cardNumber = 0;

// A button that asks once more before it acts: the first press arms it for 4 s.
export function confirmButton(text, confirmText, attributes, act) {
  let armed = null;
  const button = el("button", { type: "button", ...attributes, class: `secondary small danger ${attributes.class || ""}` }, text);
  button.addEventListener("click", () => {
    if (armed) {
      clearTimeout(armed);
      armed = null;
      button.textContent = text;
      act();
      return;
    }
    button.textContent = confirmText;
    armed = setTimeout(() => {
      armed = null;
      button.textContent = text;
    }, 4000);
  });
  return button;
}

function renameControls(card, actions) {
  const start = () => {
    const input = el("input", { type: "text", class: "rename-input", value: card.label, maxlength: "100",
      "aria-label": `New name for ${card.label}` });
    let done = false;
    const finish = (save) => {
      if (done) return;
      done = true;
      const name = input.value.trim();
      input.replaceWith(card.title);
      card.renameButton.focus();
      if (save && name && name !== card.label) actions.rename(card.label, name);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); finish(true); }
      if (event.key === "Escape") { event.preventDefault(); finish(false); }
    });
    input.addEventListener("blur", () => finish(true));
    card.title.replaceWith(input);
    input.focus();
    input.select();
  };
  return el("button", { type: "button", class: "secondary small tiny rename", onclick: start }, "Rename");
}

// Frames of one burst, sent in batches as they come (one lesson at a time: the
// lessons are queued by actions.add).
function burst(card, actions) {
  let frames = [];
  let recording = false;
  let taken = 0;
  const flush = () => {
    const batch = frames;
    frames = [];
    if (batch.length) actions.add(card.label, batch, { burst: true });
  };
  return {
    start() {
      recording = true;
      taken = 0;
      card.recordCount.textContent = "recording…";
    },
    frame(blob) {
      taken += 1;
      frames.push(new File([blob], `camera-${Date.now()}-${taken}.jpg`, { type: "image/jpeg" }));
      card.recordCount.textContent = `${plural(taken, "frame")} recorded`;
      if (frames.length >= BURST_BATCH || !recording) flush();
    },
    stop(error) {
      recording = false;
      if (error) card.recordCount.textContent = `No camera: ${error.message}`;
      flush();
    },
  };
}

function cameraControls(card, actions) {
  const video = el("video", { class: "camera-view", muted: true, playsinline: true, "aria-label": `Camera for ${card.label}` });
  const record = el("button", { type: "button", class: "record" }, "Hold to record");
  card.recordCount = el("span", { class: "record-count", role: "status", "aria-live": "polite" });
  const panel = el("div", { class: "camera-panel", hidden: true }, video,
    el("div", { class: "row" }, record, card.recordCount));
  const recorder = burst(card, actions);
  camera.holdToRecord(record, {
    onstart: () => {
      record.textContent = "Recording… let go to stop";
      recorder.start();
    },
    onframe: recorder.frame,
    onstop: (error) => {
      record.textContent = "Hold to record";
      recorder.stop(error);
    },
  });
  const toggle = el("button", { type: "button", class: "secondary small webcam", "aria-pressed": "false",
    "aria-expanded": "false" }, "Camera");
  const close = () => {
    panel.hidden = true;
    toggle.setAttribute("aria-pressed", "false");
    toggle.setAttribute("aria-expanded", "false");
    camera.removeView(video);
  };
  toggle.addEventListener("click", async () => {
    if (!panel.hidden) {
      close();
      camera.release(card);
      return;
    }
    panel.hidden = false;
    toggle.setAttribute("aria-pressed", "true");
    toggle.setAttribute("aria-expanded", "true");
    camera.addView(video);
    try {
      await camera.acquire(card);
      card.recordCount.textContent = "";
    } catch (error) {
      card.recordCount.textContent = `No camera: ${error.message}`;
    }
    record.focus();
  });
  // The camera turned off elsewhere (the preview's button) closes this view too.
  const unlisten = on("camera", (live) => live || close());
  const dispose = () => {
    unlisten();
    close();
    camera.release(card);
  };
  return { toggle, panel, dispose };
}

// A new card for `cls` ({label, count, examples}); `actions` holds the calls
// that change the model: add(label, files), remove(id), rename(old, new), remove_class(label).
export function classCard(cls, actions) {
  const number = ++cardNumber;
  const card = { label: cls.label };
  card.title = el("h3", { class: "class-name", id: `class-${number}` }, cls.label);
  card.count = el("span", { class: "count" });
  card.thumbs = el("ul", { class: "thumbs", "aria-label": `Examples of ${cls.label}` });
  card.nopictures = el("p", { class: "hint nopictures" }, "Its examples came without pictures.");
  card.renameButton = renameControls(card, actions);
  const remove = confirmButton("Delete", "Delete? Press again", { class: "tiny delete-class" },
    () => actions.removeClass(card.label));
  const picker = filePicker({ id: `add-photos-${number}`, text: "Add photos", onfiles: (files) => actions.add(card.label, files) });
  const cam = cameraControls(card, actions);
  card.element = el(
    "li",
    { class: "class-card", "aria-labelledby": `class-${number}` },
    el("div", { class: "class-head" }, el("div", { class: "class-title" }, card.title, card.count),
      el("div", { class: "class-actions" }, card.renameButton, remove)),
    card.thumbs,
    card.nopictures,
    el("div", { class: "row add-row" }, picker.label, cam.toggle, el("span", { class: "drop-note" }, "or drop photos here")),
    cam.panel,
  );
  card.element.dataset.label = cls.label;
  card.controls = { remove, picker, cam };
  card.dispose = cam.dispose; // a deleted class lets go of the camera
  acceptDrops(card.element, (files) => actions.add(card.label, files));
  updateCard(card, cls, actions);
  return card;
}

// Bring a card up to date with `cls` without replacing its controls.
export function updateCard(card, cls, actions) {
  card.label = cls.label;
  card.element.dataset.label = cls.label;
  card.title.textContent = cls.label;
  card.thumbs.setAttribute("aria-label", `Examples of ${cls.label}`);
  card.renameButton.setAttribute("aria-label", `Rename ${cls.label}`);
  card.controls.remove.setAttribute("aria-label", `Delete the class ${cls.label}`);
  card.controls.picker.label.setAttribute("aria-label", `Add photos of ${cls.label}`);
  card.controls.cam.toggle.setAttribute("aria-label", `Camera for ${cls.label}`);
  const examples = cls.examples || [];
  card.count.textContent = cls.count ? plural(cls.count, "example") : "no examples yet";
  const shown = new Map([...card.thumbs.children].map((item) => [item.dataset.id, item]));
  const items = examples.map((example, index) => {
    const item = shown.get(example.id) || thumb(example, actions);
    item.querySelector("img").alt = `example ${index + 1} of ${cls.label}`;
    item.querySelector("button").setAttribute("aria-label", `Remove example ${index + 1} of ${cls.label}`);
    return item;
  });
  card.thumbs.replaceChildren(...items);
  const missing = (cls.count || 0) - examples.length;
  if (missing > 0 && examples.length) card.thumbs.append(el("li", { class: "more" }, `+${missing}`));
  card.thumbs.hidden = !card.thumbs.children.length;
  // A model opened from a file may hold no pictures of its examples.
  card.nopictures.hidden = !(missing > 0 && !examples.length);
}

function thumb(example, actions) {
  const item = el("li", { class: "thumb" }, el("img", { src: example.thumbnail, alt: "" }));
  item.dataset.id = example.id;
  const remove = el("button", { type: "button", class: "remove-example", title: "Remove this example" }, "×");
  remove.addEventListener("click", () => {
    // Keep the keyboard where it was: on the next example's button, or the card.
    const next = item.nextElementSibling || item.previousElementSibling;
    item.classList.add("removing");
    actions.removeExample(example.id).then(() => {
      const target = next && next.isConnected ? next.querySelector("button") : null;
      if (target) target.focus();
    });
  });
  item.append(remove);
  return item;
}
