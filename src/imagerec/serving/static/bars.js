// One answer drawn the same way everywhere (result cards and the live preview):
// the decision line, then each class with its own probability as a bar.
import { el } from "./api.js";

// The answer above the bars: the label, "not sure" under the server's sure
// level, or "unknown" with the taught class that came closest. The bars
// below are the classes' own probabilities (they never add up past 100 %).
export function answerLine(result) {
  const kind = result.unknown ? "unknown" : result.sure === false ? "unsure" : "sure";
  const line = el("div", { class: `answer ${kind}` });
  if (result.unknown) {
    line.textContent = result.closest ? `unknown — closest: ${result.closest.label}` : "unknown";
    if (result.match != null && result.threshold != null) {
      line.title = `match ${result.match.toFixed(3)} is under the threshold ${result.threshold.toFixed(3)}`;
    }
  } else {
    line.textContent = result.sure === false ? `${result.label} — not sure` : result.label;
  }
  return line;
}

export function predictionRow(prediction) {
  const value = Math.max(0, Math.min(1, prediction.score));
  const percent = `${(value * 100).toFixed(1)} %`;
  const fill = el("span");
  fill.style.width = `${(value * 100).toFixed(1)}%`;
  return el(
    "div",
    { class: "prediction" },
    el("span", { class: "label" }, prediction.label),
    el("span", { class: "percent" }, percent),
    el("div", { class: "bar", role: "presentation" }, fill),
  );
}

// The answer and its bars into `box` (replacing what was there).
export function drawAnswer(box, result) {
  box.replaceChildren();
  if (result.label != null) box.append(answerLine(result));
  for (const prediction of result.predictions || []) box.append(predictionRow(prediction));
}
