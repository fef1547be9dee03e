"""What moves the weights: optimizers named as in Keras, Lookahead averaging, learning-rate schedules, losses.

Every piece is PyTorch, configured with Keras's default hyper-parameters,
and works on plain tensors (the Keras variables' ``.value``), so it serves
any model :class:`~imagerec.training.torch_graph.ModelRunner` drives.

>>> import torch
>>> weight = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
>>> optimizer = make_optimizer("sgd", [weight], lr=0.5, momentum=0.0)
>>> (weight ** 2).sum().backward(); optimizer.step()
>>> weight.detach().tolist()
[0.0, 0.0]
>>> [round(schedule_factor("onecycle", p, warmup=0.25), 2) for p in (0.0, 0.25, 0.625, 1.0)]
[0.2, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import UsageError
from .config import CLASS_WEIGHTS, LOSSES, OPTIMIZERS, SCHEDULES

__all__ = ["Lookahead", "class_weights", "make_loss", "make_optimizer", "schedule_factor"]


def make_optimizer(
    name: str,
    params: Sequence[Any],
    norm_params: Sequence[Any] = (),
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    norm_lr_scale: float = 1.0,
) -> Any:
    """The PyTorch optimizer ``name`` (a Keras name) over two groups of tensors.

    The batch-norm parameters ``norm_params`` learn ``norm_lr_scale`` times
    faster, with their weight decay divided by as much, so that every
    parameter loses the same fraction to decay per step. Each group's
    ``"lr_scale"`` says how its rate follows the schedule (the training loop
    sets ``group["lr"] = lr * group["lr_scale"] * schedule_factor(...)``).
    SGD uses Nesterov momentum when ``momentum`` is above 0.

    >>> import torch
    >>> plain, fast = make_optimizer("sgd", [torch.zeros(2)], [torch.zeros(1)], lr=0.4, weight_decay=1e-3,
    ...                              norm_lr_scale=64).param_groups
    >>> fast["lr"] == 64 * plain["lr"], fast["lr"] * fast["weight_decay"] == plain["lr"] * plain["weight_decay"]
    (True, True)
    """
    import torch

    groups = [
        {"params": list(params), "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": list(norm_params), "weight_decay": weight_decay / norm_lr_scale, "lr_scale": norm_lr_scale},
    ]
    groups = [group for group in groups if group["params"]]
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    name = name.lower()
    # Keras's defaults where they differ from PyTorch's (epsilon 1e-7, rmsprop rho 0.9).
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=1e-7)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=1e-7)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-7)
    if name == "adagrad":
        return torch.optim.Adagrad(groups, lr=lr, eps=1e-7, initial_accumulator_value=0.1)
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=lr, rho=0.95, eps=1e-7)
    if name == "adamax":
        return torch.optim.Adamax(groups, lr=lr, eps=1e-7)
    if name == "nadam":
        return torch.optim.NAdam(groups, lr=lr, eps=1e-7)
    if name == "radam":
        return torch.optim.RAdam(groups, lr=lr, eps=1e-7)
    raise UsageError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


class Lookahead:
    """An exponential average of the weights (and batch-norm statistics),
    copied back into the model every few steps over the last 70 % of the run.

    The averaging strengthens as training ends (the decay rises with the
    cube of progress), so the model moves fast early and settles late; it
    is airbench's variant of the Lookahead optimizer. Steps are counted so
    that each epoch sees the same averaging whatever the batch size: every
    ``5 × 1024 / batch_size`` steps, at a decay of 0.95 per 1024 images.
    Integer tensors (counters) are left alone.

    >>> import torch
    >>> weight = torch.zeros(2)
    >>> lookahead = Lookahead([weight], batch_size=1024)
    >>> lookahead.after_step(30, total_steps=100)     # 30 % of the run: the average starts here
    >>> weight += 1.0
    >>> lookahead.after_step(35, total_steps=100)     # pulled back toward the average
    >>> bool((weight < 1.0).all())
    True
    """

    START = 0.3  # fraction of the run before averaging begins

    def __init__(self, variables: Sequence[Any], batch_size: int) -> None:
        self.variables = [v for v in variables if v.is_floating_point()]
        self.every = max(1, round(5 * 1024 / batch_size))
        self.base = 0.95 ** (batch_size / 1024 * self.every)  # 0.95 per 1024 images
        self.average: list | None = None

    def after_step(self, step: int, total_steps: int) -> None:
        """Call after optimizer step number ``step`` (from 1) of ``total_steps``."""
        import torch

        progress = step / max(1, total_steps)
        if progress < self.START or step % self.every:
            return
        with torch.no_grad():
            if self.average is None:
                self.average = [v.detach().clone() for v in self.variables]
                return
            decay = self.base * progress**3
            for average, variable in zip(self.average, self.variables):
                average.lerp_(variable, 1 - decay)
                variable.copy_(average)

    def copy_back(self) -> None:
        """Put the average into the model (at the end of an epoch, before validating and saving)."""
        import torch

        if self.average is None:
            return
        with torch.no_grad():
            for average, variable in zip(self.average, self.variables):
                variable.copy_(average)


def class_weights(mode: str, targets: Sequence[int], num_classes: int) -> list[float] | None:
    """Each class's loss weight for ``mode`` (``"balanced"``: ``n / (classes × count)``, scikit-learn's
    ``compute_class_weight``), or None for ``"none"``.

    >>> class_weights("balanced", [0, 0, 0, 1], 2), class_weights("none", [0, 1], 2)
    ([0.6667, 2.0], None)
    """
    if mode == "none":
        return None
    if mode not in CLASS_WEIGHTS:
        raise UsageError(f"class weight must be 'balanced' or 'none', got {mode!r}")
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    targets = np.asarray(targets)
    present = np.unique(targets)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=targets)
    return [round(float(w), 4) for w in weights]


def make_loss(name: str, *, num_classes: int, label_smoothing: float = 0.0,
              outputs_logits: bool = True, weights: Sequence[float] | None = None) -> Callable[[Any, Any], Any]:
    """``loss(outputs, targets)`` for integer ``targets``; a Keras loss name.

    ``outputs_logits`` says whether the model's outputs are pre-softmax
    scores (the numerically stable path) or probabilities. ``weights``, one
    per class, multiply each example's loss by its class's weight before the
    batch mean (Keras's ``class_weight``: the sum is divided by the batch size).

    >>> import torch
    >>> loss = make_loss("categorical_crossentropy", num_classes=2)
    >>> round(float(loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # log 2
    0.6931
    >>> weighted = make_loss("categorical_crossentropy", num_classes=2, weights=[1.0, 3.0])
    >>> round(float(weighted(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)
    2.0794
    """
    name = name.lower()
    if name not in LOSSES:
        raise UsageError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    per_example = _per_example_loss(name, num_classes, label_smoothing, outputs_logits)
    if weights is None:
        return lambda out, targets: per_example(out, targets).mean()
    import torch

    if len(weights) != num_classes:
        raise UsageError(f"{len(weights)} class weights for {num_classes} classes")
    class_weight = torch.tensor(list(weights), dtype=torch.float32)
    return lambda out, targets: (per_example(out, targets) * class_weight[targets]).mean()


def _per_example_loss(name: str, num_classes: int, label_smoothing: float,
                      outputs_logits: bool) -> Callable[[Any, Any], Any]:
    """``loss(outputs, targets)``: the loss of each example of the batch (a vector)."""
    import torch
    import torch.nn.functional as F

    def log_probs(out):
        return torch.log_softmax(out, dim=-1) if outputs_logits else torch.log(out.clamp_min(1e-7))

    def soft_targets(targets):
        one_hot = F.one_hot(targets, num_classes).to(torch.float32)
        return one_hot * (1 - label_smoothing) + label_smoothing / num_classes

    if name in ("categorical_crossentropy", "sparse_categorical_crossentropy", "crossentropy"):
        def crossentropy(out, targets):
            if outputs_logits:
                return F.cross_entropy(out, targets, label_smoothing=label_smoothing, reduction="none")
            return -(soft_targets(targets) * log_probs(out)).sum(dim=-1)

        return crossentropy
    if name == "categorical_focal_crossentropy":
        def focal(out, targets, gamma: float = 2.0, alpha: float = 0.25):
            logp = log_probs(out)
            p = logp.exp()
            return -(alpha * soft_targets(targets) * (1 - p) ** gamma * logp).sum(dim=-1)

        return focal
    if name == "categorical_hinge":
        def hinge(out, targets):
            p = torch.softmax(out, dim=-1) if outputs_logits else out
            y = soft_targets(targets)
            pos = (y * p).sum(dim=-1)
            neg = ((1 - y) * p).amax(dim=-1)
            return F.relu(neg - pos + 1)

        return hinge

    def mse(out, targets):
        p = torch.softmax(out, dim=-1) if outputs_logits else out
        return ((p - soft_targets(targets)) ** 2).mean(dim=-1)

    return mse


def schedule_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """The multiplier on the peak learning rate at ``progress`` ∈ [0, 1] of the run.

    ``onecycle`` warms up linearly from 20 % of the peak over the first
    ``warmup`` of the run, then decays linearly to 0; ``linear`` and
    ``cosine`` decay from the peak; ``constant`` stays at it.

    >>> schedule_factor("constant", 0.9), schedule_factor("linear", 0.75), schedule_factor("cosine", 0.5)
    (1.0, 0.25, 0.5)
    """
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if schedule != "onecycle":
        raise UsageError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if warmup > 0 and progress < warmup:
        return 0.2 + 0.8 * progress / warmup
    return max(0.0, (1.0 - progress) / max(1e-9, 1.0 - warmup))
