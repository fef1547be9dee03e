// The one camera of the page (getUserMedia): turned on and off from anywhere,
// shown in as many <video> views as want it, grabbed as small JPEG frames,
// and recorded in bursts while a button is held (as Teachable Machine does).
import { emit } from "./api.js";

const FRAME_SIDE = 320; // the models see 224 px: a larger frame only costs upload time
let stream = null;
let starting = null;
const views = new Set();
// Frames are grabbed from a video of our own, so they never depend on which views are shown.
const source = document.createElement("video");
source.muted = true;
source.playsInline = true;

export function isOn() {
  return stream !== null;
}

export async function start() {
  if (stream) return stream;
  if (starting) return starting;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("this browser gives the page no camera (it needs https or localhost)");
  }
  starting = navigator.mediaDevices
    .getUserMedia({ video: { facingMode: "environment", width: { ideal: 640 }, height: { ideal: 480 } }, audio: false })
    .then(async (opened) => {
      stream = opened;
      source.srcObject = stream;
      await source.play().catch(() => {});
      for (const video of views) show(video);
      emit("camera", true);
      return stream;
    })
    .finally(() => {
      starting = null;
    });
  return starting;
}

// Who asked for the camera: it stays on while anyone still wants it.
const users = new Set();

export async function acquire(user) {
  users.add(user);
  try {
    return await start();
  } catch (error) {
    users.delete(user);
    throw error;
  }
}

export function release(user) {
  users.delete(user);
  if (!users.size) stop();
}

export function stop() {
  users.clear();
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
  stream = null;
  source.srcObject = null;
  for (const video of views) video.srcObject = null;
  emit("camera", false);
}

function show(video) {
  video.srcObject = stream;
  video.play().catch(() => {});
}

// A <video> that shows the camera whenever it is on.
export function addView(video) {
  video.muted = true;
  video.playsInline = true;
  views.add(video);
  if (stream) show(video);
}

export function removeView(video) {
  views.delete(video);
  video.srcObject = null;
}

async function ready() {
  if (source.readyState >= 2 && source.videoWidth) return true;
  await new Promise((resolve) => {
    source.addEventListener("loadeddata", resolve, { once: true });
    setTimeout(resolve, 2000);
  });
  return source.readyState >= 2 && source.videoWidth > 0;
}

// The current frame as a JPEG Blob (at most FRAME_SIDE px on its long side), or null.
export async function grab() {
  if (!stream || !(await ready())) return null;
  const scale = Math.min(1, FRAME_SIDE / Math.max(source.videoWidth, source.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(source.videoWidth * scale);
  canvas.height = Math.round(source.videoHeight * scale);
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

// While `button` is held (pointer, or Space/Enter on the keyboard) grab a
// frame every `interval` ms and hand it to onframe(blob); onstop() when let go.
export function holdToRecord(button, { onstart, onframe, onstop, interval = 100 }) {
  let timer = null;
  let held = false;
  const begin = async () => {
    if (held) return;
    held = true;
    button.classList.add("recording");
    button.setAttribute("aria-pressed", "true");
    try {
      await start();
    } catch (error) {
      end();
      onstop && onstop(error);
      return;
    }
    if (!held) return; // let go while the camera was starting
    onstart && onstart();
    const tick = async (first = false) => {
      const blob = await grab();
      if (blob && (held || first)) onframe(blob);
    };
    tick(true); // a short press still records one frame
    timer = setInterval(tick, interval);
  };
  const end = () => {
    if (!held) return;
    held = false;
    clearInterval(timer);
    timer = null;
    button.classList.remove("recording");
    button.setAttribute("aria-pressed", "false");
    onstop && onstop(null);
  };
  button.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    button.setPointerCapture && button.setPointerCapture(event.pointerId);
    begin();
  });
  for (const name of ["pointerup", "pointercancel", "lostpointercapture", "blur"]) button.addEventListener(name, end);
  button.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press on a phone
  button.addEventListener("keydown", (event) => {
    if ((event.key === " " || event.key === "Enter") && !event.repeat) {
      event.preventDefault();
      begin();
    }
  });
  button.addEventListener("keyup", (event) => {
    if (event.key === " " || event.key === "Enter") end();
  });
  button.setAttribute("aria-pressed", "false");
}
