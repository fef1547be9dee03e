// The live preview: the camera feed (or, with the camera off, the last photo)
// predicted over and over by the chosen model, with a bar per class, the
// decision ("unknown", "not sure") spelled out, and the frames per second.
import { $, api, errorText, on, say } from "./api.js";
import { drawAnswer } from "./bars.js";
import * as camera from "./camera.js";
import { current, labelCount, models } from "./models.js";

const FPS_WINDOW = 10; // frames the rate is measured over
let looping = false;
let lastPhoto = null;
let frameTimes = [];
let latest = 0; // only the newest question's answer is drawn (an older one may come back later)

function topK(model) {
  const info = models.get(model);
  // A taught model shows every class it knows; a zoo model its top five.
  return info && info.learned ? Math.min(Math.max(labelCount(model), 1), 20) : 5;
}

async function predict(blob, name) {
  const model = current();
  if (!model) return null;
  const mine = ++latest;
  const form = new FormData();
  form.append("file", blob, name);
  const query = new URLSearchParams({ model, top_k: topK(model) });
  const reply = await api(`/v1/predict?${query}`, { method: "POST", body: form });
  const result = reply.body && Array.isArray(reply.body.results) ? reply.body.results[0] : null;
  if (mine !== latest) return result; // the camera went off, or a newer photo came
  if (!result || result.error) {
    say($("#preview-status"), `Cannot predict: ${result && result.error ? result.error.message : errorText(reply)}`, true);
    return null;
  }
  say($("#preview-status"), "");
  $("#preview-model").textContent = reply.body.model;
  $("#preview-model-line").hidden = false;
  drawAnswer($("#preview-answer"), result);
  return result;
}

function countFrame() {
  frameTimes.push(performance.now());
  if (frameTimes.length > FPS_WINDOW) frameTimes.shift();
  const fps = $("#preview-fps");
  if (frameTimes.length < 2) return;
  const seconds = (frameTimes[frameTimes.length - 1] - frameTimes[0]) / 1000;
  const rate = (frameTimes.length - 1) / seconds;
  fps.textContent = `${rate.toFixed(1)} frames/s`;
  fps.dataset.fps = rate.toFixed(2);
}

// One prediction after another while the camera is on (never two at once:
// the rate shown is what this server really keeps up with).
async function loop() {
  if (looping) return;
  looping = true;
  frameTimes = [];
  try {
    while (camera.isOn()) {
      if (document.hidden) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        continue;
      }
      const blob = await camera.grab();
      if (!blob) break;
      if (await predict(blob, "camera.jpg")) countFrame();
      else await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    looping = false;
  }
}

function showSource() {
  const live = camera.isOn();
  $("#preview-video").hidden = !live;
  $("#preview-photo").hidden = live || !lastPhoto;
  $("#preview-empty").hidden = live || !!lastPhoto;
  $("#preview-fps").hidden = !live;
  const toggle = $("#camera-toggle");
  toggle.textContent = live ? "Turn camera off" : "Turn camera on";
  toggle.setAttribute("aria-pressed", String(live));
}

async function predictLastPhoto() {
  if (!camera.isOn() && lastPhoto) await predict(lastPhoto, lastPhoto.name || "photo");
}

export function setUp() {
  camera.addView($("#preview-video"));
  $("#camera-toggle").addEventListener("click", async () => {
    if (camera.isOn()) {
      camera.stop();
      return;
    }
    say($("#preview-status"), "Asking for the camera…");
    try {
      await camera.acquire("preview");
      say($("#preview-status"), "");
    } catch (error) {
      say($("#preview-status"), `No camera: ${error.message}`, true);
    }
  });
  on("camera", (live) => {
    latest += 1; // what is in flight belongs to the other source
    showSource();
    if (live) loop();
    else {
      $("#preview-answer").replaceChildren();
      $("#preview-model-line").hidden = true;
      predictLastPhoto();
    }
  });
  on("photo", (file) => {
    lastPhoto = file;
    const image = $("#preview-photo");
    if (image.src) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(file);
    showSource();
    predictLastPhoto();
  });
  // A changed model (or its classes) is seen at once on the last photo.
  on("model", predictLastPhoto);
  on("card", predictLastPhoto);
  showSource();
}
