// The model picker: every model the server serves, named with what it knows.
import { $, api, emit, errorText, plural, say } from "./api.js";

export const models = new Map(); // name -> the /v1/models entry
const select = () => $("#model");

export function current() {
  return select().value;
}

// How many classes a model knows (0 when it is not listed).
export function labelCount(name) {
  const model = models.get(name);
  return model ? model.labels : 0;
}

export async function loadModels(wanted) {
  const reply = await api("/v1/models");
  if (!reply.ok) {
    say($("#status"), `Cannot list the models: ${errorText(reply)}`, true);
    return false;
  }
  const previous = wanted || select().value;
  models.clear();
  const options = [];
  for (const model of reply.body.models) {
    models.set(model.name, model);
    // "taught (3 learned classes)", never "taught (taught, 3 classes)".
    const kind = model.learned ? plural(model.labels, "learned class", "learned classes") : plural(model.labels, "label");
    const option = document.createElement("option");
    option.value = model.name;
    option.textContent = `${model.name} (${kind})`;
    options.push(option);
  }
  select().replaceChildren(...options);
  if (previous && models.has(previous)) select().value = previous;
  emit("model", select().value);
  return true;
}

export function watchPicker() {
  select().addEventListener("change", () => emit("model", select().value));
}
