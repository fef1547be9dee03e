// What every part of the page shares: the API key, calls to this server's
// JSON API, status lines and a tiny DOM builder. Nothing here talks to any
// other host: the page works with no internet.

export const MAX_PER_REQUEST = 16; // the server's default limit of images per request

export const $ = (selector, root = document) => root.querySelector(selector);

// The page's parts tell each other what changed: "card" (the taught model's
// classes and examples), "model" (the model picker), "photo" (a new last photo).
export const events = new EventTarget();
export function emit(name, detail) {
  events.dispatchEvent(new CustomEvent(name, { detail }));
}
export function on(name, handler) {
  const listener = (event) => handler(event.detail);
  events.addEventListener(name, listener);
  return () => events.removeEventListener(name, listener); // to stop listening
}

export function apiKey() {
  return localStorage.getItem("imagerec-key") || "";
}

export function setApiKey(key) {
  localStorage.setItem("imagerec-key", key);
}

// One call to the API: {ok, status, body}, never a thrown network error.
export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("x-api-key", apiKey());
  if (options.json !== undefined) {
    headers.set("content-type", "application/json");
    options = { ...options, body: JSON.stringify(options.json) };
  }
  let reply;
  try {
    reply = await fetch(path, { ...options, headers });
  } catch (error) {
    return { ok: false, status: 0, body: { error: { message: `network error: ${error.message}` } } };
  }
  let body = null;
  try {
    body = await reply.json();
  } catch (_) {
    body = null;
  }
  if (reply.status === 401) $("#key-panel").hidden = false;
  return { ok: reply.ok, status: reply.status, body };
}

// A file download through the API (the key goes in a header, so no plain link).
export async function download(path, filename) {
  const headers = apiKey() ? { "x-api-key": apiKey() } : {};
  let reply;
  try {
    reply = await fetch(path, { headers });
  } catch (error) {
    return { ok: false, status: 0, body: { error: { message: `network error: ${error.message}` } } };
  }
  if (!reply.ok) {
    let body = null;
    try { body = await reply.json(); } catch (_) { body = null; }
    return { ok: false, status: reply.status, body };
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await reply.blob());
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  return { ok: true, status: reply.status, body: null };
}

export function errorText(reply) {
  if (reply.body && reply.body.error && reply.body.error.message) return reply.body.error.message;
  return `the server answered ${reply.status}`;
}

export function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// el("button", {class: "x", type: "button", onclick: f}, "text", child…)
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

export function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}

// A styled file chooser: a label that looks like a button around a visually
// hidden (still focusable) file input, so the browser's raw control never shows.
export function filePicker({ id, text, accept = "image/*", multiple = true, onfiles, secondary = true }) {
  const input = el("input", { id, type: "file", accept, multiple, class: "visually-hidden" });
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = "";
    if (files.length) onfiles(files);
  });
  const label = el("label", { class: `button file-button${secondary ? " secondary" : ""}`, for: id }, input, text);
  return { label, input };
}

// Drop files onto an element (and show that it accepts them).
export function acceptDrops(element, onfiles) {
  for (const name of ["dragenter", "dragover"]) {
    element.addEventListener(name, (event) => {
      if (!event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      element.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) element.addEventListener(name, () => element.classList.remove("over"));
  element.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = [...event.dataTransfer.files].filter((file) => file.size > 0);
    if (files.length) onfiles(files);
  });
}
