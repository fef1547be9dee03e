"""The "unknown" threshold: held-out scores of a head, and the threshold that separates them.

Every head's ``confidence`` is the cosine similarity to the nearest class
mean; :func:`held_out_scores` measures it on examples a head did not see
(held-out folds, and whole classes left out to stand for photos of untaught
things), and :func:`calibrate` picks the threshold from those scores.

>>> import numpy as np
>>> from imagerec.transfer.heads import ImprintHead
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(c, 0.3, (6, 4)) for c in np.eye(3, 4) * 2])
>>> known, correct, untaught = held_out_scores(ImprintHead().clone, X, np.repeat([0, 1, 2], 6), ["a", "b", "c"])
>>> calibration = calibrate(known, untaught)
>>> bool(calibration.known_accepted >= 0.8 and calibration.untaught_rejected >= 0.8)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .base import Head

__all__ = ["Calibration", "calibrate", "held_out_scores", "DUPLICATE_SIMILARITY"]

# Embeddings this similar are the same scene: frames of one camera burst, a
# photo and its resized copy (cat_720p / cat_1080p: 0.998), while two
# different photos of a cat in the shared set are at 0.69.
DUPLICATE_SIMILARITY = 0.97


@dataclass
class Calibration:
    """A threshold and the evidence it was chosen from (stored in the manifest)."""

    threshold: float
    method: str
    known_accepted: float | None = None  # share of held-out known-class examples kept
    untaught_rejected: float | None = None  # share of simulated untaught examples rejected
    held_out_accuracy: float | None = None
    counts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        def r(value):
            return None if value is None else round(float(value), 4)

        return {
            "threshold": r(self.threshold), "method": self.method, "known_accepted": r(self.known_accepted),
            "untaught_rejected": r(self.untaught_rejected), "held_out_accuracy": r(self.held_out_accuracy),
            **self.counts,
        }


def held_out_scores(
    new_head: Callable[[], Head],
    X: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    *,
    folds: int = 5,
    max_examples: int = 2000,
    max_left_out_classes: int = 10,
    seed: int = 0,
    duplicates: float | None = DUPLICATE_SIMILARITY,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of examples the head did not see: ``(known, correct, untaught)``.

    ``known``: the confidence of each example when its fold was held out
    (classes with a single example cannot be held out and are skipped);
    ``correct``: whether that held-out example was classified right;
    ``untaught``: the confidence on the examples of a class the head was
    fitted *without* — leaving each class out in turn simulates photos of
    a class nobody taught. ``new_head`` makes an unfitted head for each fit
    (``head.clone``).

    Near-copies (embeddings at cosine similarity ``duplicates`` or more:
    frames of one camera burst, the same photo taught twice) share a fold,
    so a held-out example is never measured against its own twin — which
    would score ~1.0 and put the threshold where only copies of the taught
    photos pass. ``None`` folds every example on its own.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, np.int64)
    if len(X) > max_examples:  # calibration needs a fair sample, not every example
        keep = np.sort(rng.choice(len(X), max_examples, replace=False))
        X, y = X[keep], y[keep]
    counts = np.bincount(y, minlength=len(labels))
    fold_of, k = _folds(X, y, len(labels), folds, rng, duplicates)
    known, correct = [], []
    for f in range(k):
        test = fold_of == f
        train = ~test
        if not test.any() or len(np.unique(y[train])) < min(2, len(labels)):
            continue
        head = new_head().fit(X[train], y[train], labels)
        known.append(head.confidence(X[test]))
        correct.append(head.predict_proba(X[test]).argmax(axis=1) == y[test])
    untaught = []
    present = np.flatnonzero(counts > 0)
    if len(present) - 1 >= new_head().min_classes:
        left_out = rng.permutation(present)[:max_left_out_classes]
        for c in left_out:
            rest = y != c
            remap = {old: new for new, old in enumerate(np.unique(y[rest]))}
            names = [labels[old] for old in remap]
            head = new_head().fit(X[rest], np.array([remap[v] for v in y[rest]]), names)
            untaught.append(head.confidence(X[y == c][:200]))
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    return cat(known, np.float32), cat(correct, bool), cat(untaught, np.float32)


def _folds(X: np.ndarray, y: np.ndarray, n_classes: int, folds: int, rng: np.random.Generator,
           duplicates: float | None) -> tuple[np.ndarray, int]:
    """``(fold of each example or -1, number of folds)``: groups of near-copies, spread over the folds per class.

    A class with a single group (one photo, or one burst) cannot be held out.
    """
    fold_of = np.full(len(y), -1)
    groups = {c: _near_copy_groups(X[y == c], duplicates) for c in range(n_classes) if (y == c).any()}
    most = max((len(set(g)) for g in groups.values()), default=0)
    k = int(min(folds, most))
    for c, group_of in groups.items():
        names = np.unique(group_of)
        if len(names) < 2:
            continue
        order = rng.permutation(names)
        fold_of_group = {int(g): position % k for position, g in enumerate(order)}
        fold_of[np.flatnonzero(y == c)] = [fold_of_group[int(g)] for g in group_of]
    return fold_of, k


def _near_copy_groups(X: np.ndarray, duplicates: float | None) -> np.ndarray:
    """A group number per row: rows linked by cosine similarity ≥ ``duplicates`` (transitively) share one."""
    if duplicates is None or len(X) < 2:
        return np.arange(len(X))
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    linked = (unit @ unit.T) >= duplicates
    return connected_components(csr_matrix(linked), directed=False)[1]


def calibrate(known: np.ndarray, untaught: np.ndarray, *, keep_known: float = 0.95) -> Calibration | None:
    """The threshold separating known-class scores from untaught-class scores.

    With untaught scores it maximises balanced accuracy (known kept + untaught
    rejected) and sits in the middle of the best range, for margin on both
    sides; without them it keeps ``keep_known`` of the known examples. None
    when there is nothing to calibrate on.

    >>> calibrate(np.array([0.8, 0.9, 0.7]), np.array([0.2, 0.3])).threshold
    0.5
    """
    known, untaught = np.asarray(known, np.float64), np.asarray(untaught, np.float64)
    if len(known) == 0 and len(untaught) == 0:
        return None
    if len(untaught) == 0:
        threshold = float(np.quantile(known, 1 - keep_known))
        return Calibration(threshold, f"keeps {keep_known:.0%} of held-out known examples",
                           known_accepted=float((known >= threshold).mean()))
    if len(known) == 0:
        # Only simulated untaught examples (one photo per class): reject nearly all of them.
        threshold = float(np.max(untaught)) + 1e-3
        return Calibration(threshold, "just above every simulated untaught example (no held-out known examples)",
                           untaught_rejected=1.0)
    values = np.unique(np.concatenate([known, untaught]))
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    balanced = np.array([((known >= t).mean() + (untaught < t).mean()) / 2 for t in candidates])
    best = np.flatnonzero(balanced >= balanced.max() - 1e-12)
    # The best thresholds form ranges; take the middle of the widest plateau's span.
    low, high = candidates[best[0]], candidates[best[-1]]
    contiguous = best[-1] - best[0] + 1 == len(best)
    threshold = float((low + high) / 2) if contiguous else float(candidates[best[len(best) // 2]])
    return Calibration(
        threshold,
        "balances held-out known examples against left-out classes",
        known_accepted=float((known >= threshold).mean()),
        untaught_rejected=float((untaught < threshold).mean()),
    )
