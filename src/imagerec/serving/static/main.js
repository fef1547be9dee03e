// imagerec web page: recognise dropped photos (with "Why?" heat maps and
// descriptions), teach a model classes from photos or the camera, watch it
// live, see how good it is and keep it. Plain ES modules talking to this
// server's JSON API; no build step, nothing fetched from anywhere else.
import { $, say, setApiKey } from "./api.js";
import { loadModels, models, watchPicker } from "./models.js";
import * as preview from "./preview.js";
import * as quality from "./quality.js";
import * as results from "./results.js";
import * as teach from "./teach.js";

$("#key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  setApiKey($("#key").value.trim());
  $("#key").value = "";
  $("#key-panel").hidden = true;
  say($("#status"), "");
  if (await loadModels()) teach.openModel(teach.modelName());
});

watchPicker();
// Picking a learned model in the header also opens it for teaching.
$("#model").addEventListener("change", () => {
  const picked = models.get($("#model").value);
  if (picked && picked.learned && picked.name !== teach.modelName()) teach.openModel(picked.name);
});
results.setUp();
quality.setUp();
preview.setUp();
teach.setUp();
loadModels();
