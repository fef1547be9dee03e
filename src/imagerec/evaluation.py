"""Measure a recognizer on labelled images: accuracy, top-k, per-class P/R/F1, a report.

Works for every recognizer :func:`imagerec.load` opens — a trained
``.keras`` model, a zoo model, a learned ``.imagerec`` recognizer — because
it scores the dataset's preprocessed pixels through the recognizer's one
scoring path (:meth:`~imagerec.recognizer.Recognizer.score`), so its figures
are those of ``predict`` on the same files.
The dataset's class names are matched to the model's labels by name (and
by each label's synonyms, ignoring case, spaces, ``_`` and ``-``), so a
folder ``hotdog/`` evaluates an ImageNet model's ``hotdog, hot dog, red
hot`` class. A prediction of a label that is not one of the dataset's
classes counts as wrong ("other" in the confusion matrix).

``accuracy`` scores the most probable class of every image. A learned
recognizer with a threshold also answers "unknown": ``coverage`` is the
share of images answered with a class, ``accuracy_answered`` the accuracy on
those, ``accuracy_overall`` the share of all images answered right (an
"unknown" counts as not right) — in total and per class.

>>> import imagerec
>>> from imagerec.evaluation import evaluate
>>> result = evaluate(imagerec.load("mobilenet_v2"), {"macaw": ["../shared/photos/parrot.jpg"],
...                                                   "hotdog": ["../shared/photos/hot_dog.jpg"]})
>>> result.accuracy
1.0
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .core.errors import DatasetError, OutputError, UsageError
from .core.fs import atomic_path, atomic_write_text, prepare_output_folder
from .core.progress import progress as progress_bar
from .data.datasets import Dataset, DatasetSource, load_dataset
from .loading import load
from .recognizer import Recognizer

__all__ = ["evaluate", "Evaluation", "classification_metrics", "add_open_set_metrics", "match_classes", "write_report"]


@dataclass
class Evaluation:
    """Everything measured in one evaluation; ``to_dict()`` is JSON-ready."""

    model: str
    data: str
    classes: list[str]
    class_map: list[int]  # dataset class → model label index
    targets: np.ndarray  # dataset class index per image
    predicted: np.ndarray  # dataset class index per image, -1 for a label outside the dataset
    predicted_labels: list[str]
    confidence: np.ndarray  # probability of the predicted label
    top_k: int
    top_k_accuracy: float
    metrics: dict
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    report_dir: Path | None = None
    answered: np.ndarray | None = None  # per image: not "unknown" (all True without a threshold)
    threshold: float | None = None

    @property
    def accuracy(self) -> float:
        """Share of images whose most probable class is right, as if "unknown" were never answered."""
        return float(self.metrics["accuracy"])

    @property
    def coverage(self) -> float:
        """Share of images answered with a class (not "unknown")."""
        return float(self.metrics["open_set"]["coverage"])

    @property
    def accuracy_answered(self) -> float | None:
        """Accuracy on the answered images; None when every image was "unknown"."""
        return self.metrics["open_set"]["accuracy_answered"]

    @property
    def accuracy_overall(self) -> float:
        """Share of all images answered with the right class ("unknown" counts as not right)."""
        return float(self.metrics["open_set"]["accuracy_overall"])

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": self.data,
            "images": int(len(self.targets)),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "accuracy": self.accuracy,
            "threshold": self.threshold,
            "coverage": self.coverage,
            "accuracy_answered": self.accuracy_answered,
            "accuracy_overall": self.accuracy_overall,
            f"top_{self.top_k}_accuracy": self.top_k_accuracy,
            "top_k": self.top_k,
            "macro_avg": self.metrics["macro_avg"],
            "weighted_avg": self.metrics["weighted_avg"],
            "per_class": self.metrics["per_class"],
            "confusion_matrix": self.metrics["confusion_matrix"],
            "confusion_columns": self.classes + ["(other)"],
            "class_map": {c: int(i) for c, i in zip(self.classes, self.class_map)},
            "seconds": round(self.seconds, 3),
            "images_per_second": round(len(self.targets) / self.seconds, 2) if self.seconds else None,
            "report": str(self.report_dir) if self.report_dir else None,
        }


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def match_classes(classes: Sequence[str], labels: Sequence[str], synonyms: Sequence[Sequence[str]] | None = None) -> list[int]:
    """For each dataset class, the index of the model label it names.

    Exact label matches win; then a case/space/underscore-insensitive match
    of the label or any of its synonyms. Raises ``DatasetError`` naming the
    classes that match nothing.

    >>> match_classes(["hot_dog", "Cat"], ["background", "cat", "hotdog"], [("background",), ("cat",), ("hotdog", "hot dog")])
    [2, 1]
    """
    exact = {label: i for i, label in enumerate(labels)}
    loose: dict[str, int] = {}
    for i, names in enumerate(synonyms or [(label,) for label in labels]):
        for name in (labels[i], *names):
            loose.setdefault(_norm(name), i)
    mapping, missing = [], []
    for name in classes:
        if name in exact:
            mapping.append(exact[name])
        elif _norm(name) in loose:
            mapping.append(loose[_norm(name)])
        else:
            missing.append(name)
    if missing:
        sample = ", ".join(repr(label) for label in list(labels)[:6])
        raise DatasetError(
            f"dataset classes {', '.join(repr(m) for m in missing[:8])} match none of the model's "
            f"{len(labels)} labels (e.g. {sample}); rename the folders to the model's label names"
        )
    if len(set(mapping)) != len(mapping):
        raise DatasetError("two dataset classes map onto the same model label; merge or rename them")
    return mapping


def classification_metrics(targets: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    ``predicted`` may hold -1 for "none of these classes": such an image
    counts against its true class's recall and no class's precision (as in
    scikit-learn with ``labels=range(len(classes))``; zero division gives 0).

    >>> m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, -1]), ["a", "b"])
    >>> m["accuracy"], m["per_class"][1]["precision"], m["per_class"][1]["recall"]
    (0.5, 0.5, 0.5)
    """
    n = len(classes)
    targets = np.asarray(targets, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    columns = np.where(predicted < 0, n, predicted)
    confusion = np.zeros((n, n + 1), dtype=np.int64)
    np.add.at(confusion, (targets, columns), 1)
    true_positive = np.diag(confusion[:, :n]).astype(np.float64)
    predicted_count = confusion[:, :n].sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(n), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    total = support.sum()
    weights = support / total if total else np.zeros(n)
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]
    return {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "per_class": per_class,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted_avg": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
        },
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(
    model: Recognizer | str | os.PathLike[str],
    data: DatasetSource,
    *,
    top_k: int = 5,
    report: str | os.PathLike[str] | None = None,
    restrict: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
    progress: bool | None = None,
    mistakes: int = 24,
    heat_maps: bool = True,
) -> Evaluation:
    """Evaluate ``model`` (a :class:`~imagerec.recognizer.Recognizer`, a zoo name or a model file) on labelled ``data``.

    ``restrict`` only lets the model choose among the dataset's classes
    (closed-set accuracy; probabilities renormalised over them). With
    ``report`` a folder is written with ``index.html``, ``confusion.png``,
    ``mistakes/`` (the ``mistakes`` most confidently wrong images, each beside
    its heat map of the wrong answer unless ``heat_maps`` is False: see
    :func:`write_report`) and ``metrics.json``.
    """
    recognizer = model if isinstance(model, Recognizer) else load(model)
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    if report is not None:  # fail now, not after every image was predicted
        prepare_output_folder(report, what="the report")
    dataset = data if isinstance(data, Dataset) else load_dataset(data)
    class_map = match_classes(dataset.classes, recognizer.labels, recognizer.synonyms)
    started = time.perf_counter()
    pixels = dataset.arrays(recognizer.preprocessing, workers=workers, progress=False if progress is False else None)
    if not len(dataset):
        raise DatasetError("no readable images to evaluate", path=dataset.source)
    probabilities, match = _predict(recognizer, pixels, dataset.paths, batch_size, progress)
    keep = recognizer.predictable
    if restrict:
        allowed = np.zeros(len(recognizer.labels), bool)
        allowed[class_map] = True
        keep = keep & allowed
    scores = np.where(keep[None, :], probabilities, -np.inf)
    if restrict:
        sub = probabilities[:, class_map]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        scores = np.full_like(probabilities, -np.inf)
        scores[:, class_map] = sub
    seconds = time.perf_counter() - started
    best = np.argmax(scores, axis=1)
    label_to_class = {label: i for i, label in enumerate(class_map)}
    predicted = np.array([label_to_class.get(int(b), -1) for b in best], dtype=np.int64)
    targets = dataset.targets
    true_labels = np.asarray(class_map)[targets]
    k = min(top_k, int(keep.sum()))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_k_accuracy = float((top == true_labels[:, None]).any(axis=1).mean())
    metrics = classification_metrics(targets, predicted, dataset.classes)
    threshold = recognizer.threshold if match is not None else None
    answered = np.ones(len(targets), bool) if threshold is None else match >= threshold
    add_open_set_metrics(metrics, targets, predicted, answered)
    result = Evaluation(
        model=recognizer.name,
        data=dataset.source,
        classes=list(dataset.classes),
        class_map=class_map,
        targets=targets,
        predicted=predicted,
        predicted_labels=[recognizer.labels[int(b)] for b in best],
        confidence=np.take_along_axis(scores, best[:, None], axis=1)[:, 0].astype(np.float64),
        top_k=k,
        top_k_accuracy=top_k_accuracy,
        metrics=metrics,
        paths=list(dataset.paths),
        skipped=list(dataset.skipped),
        seconds=seconds,
        answered=answered,
        threshold=threshold,
    )
    if report is not None:
        write_report(result, report, pixels=pixels, mistakes=mistakes, explainer=recognizer if heat_maps else None)
    return result


def _predict(
    recognizer: Recognizer, pixels: np.ndarray, paths: Sequence[str], batch_size: int, progress: bool | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities for the dataset's preprocessed pixels (one row per path), batch by batch, and each
    image's match (what the "unknown" threshold is compared with; None without a threshold).

    The pixels are already decoded, resized and framed with the recognizer's
    preprocessing, so they go to :meth:`Recognizer.score` as they are
    (``predict_proba`` would take an array as images to preprocess again),
    and near-ties are decoded again in full by :meth:`Recognizer.refine`, as
    ``predict`` does for the same files.
    """
    chunks, matches = [], []
    # By default only a long evaluation on a terminal shows a bar.
    enabled = progress if progress is not None else (None if len(pixels) > batch_size * 4 else False)
    with progress_bar(len(pixels), "evaluating", enabled=enabled) as advance:
        for start in range(0, len(pixels), batch_size):
            chunk = np.ascontiguousarray(pixels[start : start + batch_size])
            scores = recognizer.refine(recognizer.score(chunk), paths[start : start + batch_size])
            chunks.append(np.asarray(scores.probabilities, dtype=np.float64))
            if scores.confidence is not None:
                matches.append(np.asarray(scores.confidence, dtype=np.float64))
            advance(len(chunk))
    match = np.concatenate(matches) if matches and len(matches) == len(chunks) else None
    return np.concatenate(chunks), match


def add_open_set_metrics(metrics: dict, targets: np.ndarray, predicted: np.ndarray, answered: np.ndarray) -> dict:
    """Add coverage (share answered, not "unknown"), accuracy on the answered images and accuracy overall
    (right answers over all images), in total (``metrics["open_set"]``) and per class.

    >>> m = {"per_class": [{"class": "a"}, {"class": "b"}]}
    >>> add_open_set_metrics(m, np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([True, True, False, True]))["open_set"]
    {'coverage': 0.75, 'accuracy_answered': 0.6667, 'accuracy_overall': 0.5}
    >>> m["per_class"][1]
    {'class': 'b', 'coverage': 0.5, 'accuracy_answered': 1.0, 'accuracy_overall': 0.5}
    """

    def figures(rows: np.ndarray) -> dict:
        right = (predicted[rows] == targets[rows]) & answered[rows]
        kept = int(answered[rows].sum())
        return {
            "coverage": round(float(answered[rows].mean()), 4) if rows.any() else 0.0,
            "accuracy_answered": round(float(right.sum() / kept), 4) if kept else None,
            "accuracy_overall": round(float(right.mean()), 4) if rows.any() else 0.0,
        }

    targets, predicted, answered = np.asarray(targets), np.asarray(predicted), np.asarray(answered, bool)
    metrics["open_set"] = figures(np.ones(len(targets), bool))
    for c, row in enumerate(metrics["per_class"]):
        row.update(figures(targets == c))
    return metrics


# -- the report ------------------------------------------------------------------


def write_report(result: Evaluation, folder: str | os.PathLike[str], *, pixels: np.ndarray | None = None,
                 mistakes: int = 24, explainer: Recognizer | None = None) -> Path:
    """Write ``index.html``, ``confusion.png``, ``mistakes/`` and ``metrics.json`` into ``folder``.

    ``mistakes/NN.jpg`` is one small JPEG per confidently wrong image (at
    most ``mistakes``): the photo and, with an ``explainer``, beside it the
    heat map of its wrong answer (:meth:`Recognizer.explain`: Grad-CAM where
    the model gives gradients, else occlusion), each at most
    :data:`TILE_SIDE` pixels a side — a few kilobytes each.
    """
    import matplotlib

    matplotlib.use("Agg")

    out = Path(prepare_output_folder(folder, what="the report"))
    result.report_dir = out
    try:
        _confusion_png(result, out / "confusion.png")
        wrong = _most_confidently_wrong(result, mistakes)
        tiles = write_mistake_tiles(result, wrong, out / "mistakes", pixels, explainer)
        atomic_write_text(out / "metrics.json", json.dumps(result.to_dict(), indent=1))
        atomic_write_text(out / "index.html", _html(result, wrong, tiles))
    except OSError as exc:
        where = getattr(exc, "filename", None) or out
        raise OutputError(f"{where}: cannot write the report ({exc.strerror or exc})", path=str(where)) from exc
    return out


def _save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(figure)


def _confusion_png(result: Evaluation, path: Path) -> None:
    import matplotlib.pyplot as plt

    matrix = np.asarray(result.metrics["confusion_matrix"], dtype=np.float64)
    has_other = matrix[:, -1].sum() > 0
    if not has_other:
        matrix = matrix[:, :-1]
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = len(result.classes)
    side = min(24, max(4, 0.5 * n + 2))
    figure, axis = plt.subplots(figsize=(side + (0.5 if has_other else 0), side))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    columns = result.classes + (["(other)"] if has_other else [])
    show_ticks = n <= 60
    if show_ticks:
        axis.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(n), result.classes, fontsize=8)
    if n <= 20:
        for i in range(n):
            for j in range(len(columns)):
                if matrix[i, j]:
                    axis.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if share[i, j] > 0.5 else "black")
    axis.set(xlabel="predicted", ylabel="true", title=f"{result.model}: accuracy {result.accuracy:.1%}")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    figure.tight_layout()
    _save_figure(figure, path)


def _most_confidently_wrong(result: Evaluation, limit: int) -> list[int]:
    wrong = np.flatnonzero(result.predicted != result.targets)
    order = wrong[np.argsort(-result.confidence[wrong], kind="stable")]
    return [int(i) for i in order[:limit]]


TILE_SIDE = 192  # pixels, the longer side of each half of a mistake's tile


def write_mistake_tiles(result: Evaluation, wrong: list[int], folder: Path, pixels: np.ndarray | None,
                        explainer: Recognizer | None) -> list[tuple[str, str | None]]:
    """One JPEG per wrong image in ``folder`` (``01.jpg``...): the photo, and its heat map beside it.

    The heat map explains the wrong answer (the label predicted) on the
    photo file itself; a photo that cannot be read again (a vanished file,
    an archive member) is shown from the model's input pixels without one.
    Returns ``(file name, method or None)`` per image; earlier tiles are removed.
    """
    from PIL import Image

    from .core.errors import ImagerecError

    if folder.exists():
        for old in folder.glob("*.jpg"):
            old.unlink()
    folder.parent.joinpath("mistakes.png").unlink(missing_ok=True)  # the montage of earlier versions
    if not wrong:
        return []
    folder.mkdir(exist_ok=True)
    tiles = []
    for number, index in enumerate(wrong, start=1):
        heat = None
        if explainer is not None:
            try:
                heat = explainer.explain(result.paths[index], label=result.predicted_labels[index])
            except (ImagerecError, OSError):
                heat = None
        if heat is not None:
            parts = [_shrunk(heat.photo.convert("RGB")), heat.overlay(max_side=TILE_SIDE)]
        elif pixels is not None:
            parts = [_shrunk(Image.fromarray(np.asarray(pixels[index]), "RGB"))]
        else:
            from .core.images import load_image
            from .core.preprocessing import Preprocessing

            parts = [Image.fromarray(load_image(result.paths[index], Preprocessing(size=(128, 128))), "RGB")]
        tile = Image.new("RGB", (sum(p.width for p in parts) + 4 * (len(parts) - 1), max(p.height for p in parts)),
                         (255, 255, 255))
        left = 0
        for part in parts:
            tile.paste(part, (left, 0))
            left += part.width + 4
        name = f"{number:02d}.jpg"
        with atomic_path(folder / name) as tmp:
            tile.save(tmp, format="JPEG", quality=80)
        tiles.append((name, heat.method if heat is not None else None))
    return tiles


def _shrunk(image):
    """``image`` at most :data:`TILE_SIDE` a side (small inputs enlarged to 96 px, blocky, so they can be seen)."""
    from PIL import Image

    ratio = TILE_SIDE / max(image.size)
    if ratio < 1:
        return image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))),
                            Image.Resampling.BILINEAR)
    if max(image.size) < 96:
        scale = 96 // max(image.size)
        return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def percent(value: float | None) -> str:
    """A share as a percentage, "–" when there is none.

    >>> percent(0.6667), percent(None)
    ('66.7 %', '–')
    """
    return "–" if value is None else f"{value:.1%}".replace("%", " %")


def open_set_sentence(result: Evaluation) -> str:
    """One line on "unknown": how many images were answered and how many of those, and of all, were right."""
    return (f"'unknown' when the match is under {result.threshold:.3f}: {percent(result.coverage)} of the images "
            f"answered, {percent(result.accuracy_answered)} of those right, {percent(result.accuracy_overall)} "
            f"right overall (accuracy {percent(result.accuracy)} if every image were answered)")


def _open_set_cells(row: dict) -> str:
    return "".join(f"<td>{percent(row[key])}</td>" for key in ("coverage", "accuracy_answered", "accuracy_overall"))


def _html(result: Evaluation, wrong: list[int], tiles: list[tuple[str, str | None]]) -> str:
    e = html.escape
    summary = result.to_dict()
    open_set = result.threshold is not None
    rows = "\n".join(
        f"<tr><td>{e(c['class'])}</td><td>{c['precision']:.3f}</td><td>{c['recall']:.3f}</td>"
        f"<td>{c['f1']:.3f}</td><td>{c['support']}</td>" + (_open_set_cells(c) if open_set else "") + "</tr>"
        for c in result.metrics["per_class"]
    )
    answered = f"<p>{e(open_set_sentence(result))}</p>" if open_set else ""
    open_set_heads = "<th>answered</th><th>right of answered</th><th>right overall</th>" if open_set else ""
    mistakes = "\n".join(
        f"<li><code>{e(result.paths[i])}</code>: {e(result.classes[result.targets[i]])} → "
        f"{e(result.predicted_labels[i])} ({result.confidence[i]:.1%})</li>"
        for i in wrong
    )
    figures = "\n".join(
        f'<figure><img src="mistakes/{name}" alt="{e(result.paths[i])}" loading="lazy">'
        f"<figcaption>{e(result.classes[result.targets[i]])} → {e(result.predicted_labels[i])} "
        f"({result.confidence[i]:.0%}){f'; heat map: {method}' if method else ''}</figcaption></figure>"
        for i, (name, method) in zip(wrong, tiles)
    )
    heat_note = ("<p>Each photo beside its heat map: where the model looked for the wrong answer "
                 "(hot = what drove it).</p>" if any(method for _, method in tiles) else "")
    skipped = "".join(f"<li><code>{e(p)}</code>: {e(r)}</li>" for p, r in result.skipped)
    macro, weighted = result.metrics["macro_avg"], result.metrics["weighted_avg"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imagerec evaluation: {e(result.model)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}
.mistakes{{display:flex;flex-wrap:wrap;gap:12px}}figure{{margin:0}}figcaption{{font-size:85%}}</style></head><body>
<h1>Evaluation of <code>{e(result.model)}</code></h1>
<p>Data: <code>{e(result.data)}</code> — {summary['images']} images, {len(result.classes)} classes,
{len(result.skipped)} skipped.</p>
<p><b>Accuracy {result.accuracy:.2%}</b>, top-{result.top_k} accuracy {result.top_k_accuracy:.2%};
macro F1 {macro['f1']:.3f}, weighted F1 {weighted['f1']:.3f}.
{summary['images_per_second'] or 0:.1f} images/s.</p>
{answered}
<h2>Confusion matrix</h2><p><a href="confusion.png"><img src="confusion.png" alt="confusion matrix"></a></p>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>{open_set_heads}</tr>
{rows}
<tr><th>macro avg</th><td>{macro['precision']:.3f}</td><td>{macro['recall']:.3f}</td><td>{macro['f1']:.3f}</td><td></td></tr>
<tr><th>weighted avg</th><td>{weighted['precision']:.3f}</td><td>{weighted['recall']:.3f}</td><td>{weighted['f1']:.3f}</td><td></td></tr>
</table>
<h2>Most confidently wrong</h2>
{heat_note + '<div class="mistakes">' + figures + '</div>' if tiles else '<p>No mistakes.</p>'}
<ol>{mistakes}</ol>
{'<h2>Skipped files</h2><ul>' + skipped + '</ul>' if skipped else ''}
<p><a href="metrics.json">metrics.json</a></p>
</body></html>
"""
