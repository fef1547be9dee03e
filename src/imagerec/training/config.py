"""Every setting of a training run: :class:`TrainConfig`, the choices, each architecture's defaults, the checks.

:func:`make_config` is the one place keyword settings become a
``TrainConfig``: settings left as ``None`` take the architecture's defaults
(:func:`defaults_for`), keyword arguments of the architecture's builder go to
``arch_options``, and anything else is refused in one line that lists what
is valid.

>>> config = make_config(arch="course_cnn", epochs=3)
>>> config.optimizer, config.batch_size, config.epochs
('adam', 32, 3)
>>> make_config(arch="fast_resnet", batch_size=128, widths=(32, 64)).lr   # the rate follows the batch size
0.1875
>>> make_config(epoch=3)
Traceback (most recent call last):
imagerec.core.errors.UsageError: unknown training setting 'epoch'; valid settings: arch, epochs, ...
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..architectures import ARCHITECTURES, min_image_size
from ..core.errors import UsageError
from ..core.preprocessing import NORMALIZATIONS

__all__ = [
    "CLASS_WEIGHTS",
    "LOSSES",
    "OPTIMIZERS",
    "PRECISIONS",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "TrainConfig",
    "cpu_has_bfloat16_units",
    "defaults_for",
    "make_config",
    "resolve_precision",
    "validate",
]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam")
LOSSES = (
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "mean_squared_error",
)
SCHEDULES = ("constant", "onecycle", "linear", "cosine")
PRECISIONS = ("auto", "float32", "bfloat16")
# "balanced": each example's loss weighted by n / (classes × count) of its class; "none": all alike.
CLASS_WEIGHTS = ("balanced", "none")
# Settings a resumed run may change: they say how long to go on, or how
# the arithmetic is done on this machine, not what is trained.
RESUMABLE_CHANGES = ("epochs", "patience", "max_minutes", "precision")


@dataclass
class TrainConfig:
    """Every setting of a training run (saved with the model and in the resume state)."""

    arch: str = "fast_resnet"
    epochs: int = 10
    batch_size: int = 256
    image_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.375
    loss: str = "categorical_crossentropy"
    activation: str | None = None
    label_smoothing: float = 0.2
    weight_decay: float = 1.33e-3
    momentum: float = 0.85
    schedule: str = "onecycle"
    warmup: float = 0.23
    bias_lr_scale: float = 64.0
    lookahead: bool = True
    flip: bool = True
    translate: int = 2
    cutout: int = 0
    tta: bool = True
    tta_shift: int = 0
    val_fraction: float = 0.1
    seed: int = 0
    patience: int | None = None
    max_minutes: float | None = None
    normalization: str = "unit"
    precision: str = "auto"
    resize: str = "crop"
    # Measured (bench/class_weight.py, docs/training.md): with one CIFAR-10 class
    # cut to 10 %, balanced weights raise its recall and the macro-F1.
    class_weight: str = "balanced"
    arch_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# What each architecture trains best with here (the course's choices for course_cnn).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "course_cnn": {
        "epochs": 30, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "label_smoothing": 0.0, "weight_decay": 0.0,
        "schedule": "constant", "flip": False, "translate": 0, "tta": False, "patience": 5, "activation": "relu",
        "momentum": 0.9, "warmup": 0.2, "bias_lr_scale": 1.0, "lookahead": False,
    },
    # airbench94's recipe, rescaled from batch 1024 to 256 so that every epoch
    # takes the same total step and weight decay: SGD-Nesterov at momentum
    # 0.85, a peak rate of 0.375 reached at 23 % of the run, decay of 5e-4 of
    # each weight per step at the peak (0.375 × 1.33e-3), batch-norm biases
    # learning 64× faster with the same decay, an exponential average of the
    # weights copied back every 20 steps over the last 70 % (lookahead).
    "fast_resnet": {
        "epochs": 10, "batch_size": 256, "optimizer": "sgd", "lr": 0.375, "label_smoothing": 0.2, "weight_decay": 1.33e-3,
        "schedule": "onecycle", "flip": True, "translate": 2, "tta": True, "patience": None, "activation": "gelu",
        "momentum": 0.85, "warmup": 0.23, "bias_lr_scale": 64.0, "lookahead": True,
    },
    "custom": {
        "epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "label_smoothing": 0.0, "weight_decay": 0.0,
        "schedule": "constant", "flip": True, "translate": 0, "tta": False, "patience": 5, "activation": None,
        "momentum": 0.9, "warmup": 0.2, "bias_lr_scale": 1.0, "lookahead": False,
    },
}

_DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "adagrad": 1e-2, "adadelta": 1.0,
               "adamax": 2e-3, "nadam": 1e-3, "radam": 1e-3}

# How a keyword setting becomes a field's value (None stays None where a field allows it).
_COERCE: dict[str, Callable[[Any], Any]] = {
    "epochs": int, "batch_size": int, "image_size": int, "optimizer": lambda v: str(v).lower(), "lr": float,
    "loss": lambda v: str(v).lower(), "label_smoothing": float, "weight_decay": float, "momentum": float,
    "warmup": float, "bias_lr_scale": float, "lookahead": bool, "flip": bool, "translate": int, "cutout": int,
    "tta": bool, "tta_shift": int, "val_fraction": float, "seed": int, "patience": int, "max_minutes": float,
    "class_weight": lambda v: str(v).lower(),
}
# Names train() took before they matched TrainConfig's fields; old calls keep working.
_ALIASES = {"augment_flip": "flip"}
_FIELDS = tuple(f.name for f in fields(TrainConfig))


def defaults_for(arch: str) -> dict[str, Any]:
    """The default settings :func:`train` uses for ``arch`` (a copy).

    >>> defaults_for("course_cnn")["optimizer"], defaults_for("course_cnn")["batch_size"]
    ('adam', 32)
    """
    return dict(_DEFAULTS.get(arch, _DEFAULTS["custom"]))


def make_config(base: TrainConfig | None = None, *, custom_model: bool = False, **settings: Any) -> TrainConfig:
    """One checked :class:`TrainConfig` from keyword ``settings`` (its field names).

    Without ``base``, a setting that is absent or ``None`` takes the
    architecture's default (:func:`defaults_for`); the default learning rate
    follows the optimizer, and for SGD the batch size (the same step per
    image). With ``base``, absent or ``None`` settings keep the base's values.
    ``patience`` is the exception to "``None`` is the default": ``None`` or 0
    means never stop early, ``-1`` the default. ``custom_model`` says the
    caller brings its own Keras model (``arch`` becomes ``"custom"``). Any
    other keyword must be an option of the architecture's builder, e.g.
    ``widths`` of :func:`~imagerec.architectures.fast_resnet`; it goes to
    ``arch_options``.

    >>> make_config(optimizer="adam").lr, make_config(lr=0.1, patience=0).patience
    (0.001, None)
    >>> replay = make_config(make_config(arch="course_cnn"), epochs=40)
    >>> replay.arch, replay.epochs, replay.optimizer
    ('course_cnn', 40, 'adam')
    """
    settings = {_ALIASES.get(key, key): value for key, value in settings.items()}
    if settings.get("patience") == -1:
        del settings["patience"]
    elif "patience" in settings:
        settings["patience"] = settings["patience"] or None
    given = {key: value for key, value in settings.items() if value is not None or key == "patience"}
    if custom_model:
        arch = "custom"
    else:
        arch = given.get("arch", base.arch if base is not None else TrainConfig.arch)
        if arch not in ARCHITECTURES:
            hint = " (pass your own Keras model as model=)" if arch == "custom" else ""
            raise UsageError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}{hint}")
    given["arch"] = arch
    options = {key: given.pop(key) for key in list(given) if key not in _FIELDS}
    options = {**(given.pop("arch_options", None) or {}), **options}
    _check_builder_options(arch, options, custom_model)

    if base is not None:
        values = base.to_dict()
        values["arch_options"] = {} if custom_model else {**values["arch_options"], **options}
    else:
        values = {**TrainConfig().to_dict(), **defaults_for(arch), "arch_options": options}
        if "lr" not in given:
            values["lr"] = _default_lr(arch, given)
    for key, value in given.items():
        try:
            values[key] = _COERCE[key](value) if key in _COERCE and value is not None else value
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number"}.get(_COERCE[key], "another value")
            raise UsageError(f"the setting {key} takes {kind}, got {value!r}") from None
    config = TrainConfig(**values)
    validate(config)
    return config


def _default_lr(arch: str, given: dict[str, Any]) -> float:
    """The learning rate for ``arch`` with the optimizer and batch size ``given`` (if any)."""
    base = defaults_for(arch)
    optimizer = str(given.get("optimizer", base["optimizer"])).lower()
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if optimizer != base["optimizer"]:
        return _DEFAULT_LR[optimizer]
    lr = base["lr"]
    if optimizer == "sgd" and given.get("batch_size"):
        # The linear scaling rule: the same step per image at any batch size.
        lr *= int(given["batch_size"]) / base["batch_size"]
    return lr


def _check_builder_options(arch: str, options: dict[str, Any], custom_model: bool) -> None:
    """Refuse, in one line listing the valid names, a keyword that is neither a setting nor a builder option."""
    accepted: tuple[str, ...] = ()
    if not custom_model and arch in ARCHITECTURES:
        accepted = tuple(name for name in inspect.signature(ARCHITECTURES[arch]).parameters
                         if name not in ("input_shape", "num_classes", "activation"))
    unknown = [key for key in options if key not in accepted]
    if unknown:
        valid = ", ".join(_FIELDS)
        if accepted:
            owner = f"; {arch}'s options: {', '.join(accepted)}"
        else:
            owner = "; with your own model= there are no architecture options" if custom_model else ""
        raise UsageError(f"unknown training setting {unknown[0]!r}; valid settings: {valid}{owner}")


def validate(config: TrainConfig) -> None:
    """Raise a one-line :class:`~imagerec.core.errors.UsageError` for the first setting that cannot work."""
    resolve_precision(config.precision)
    if config.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if config.loss not in LOSSES:
        raise UsageError(f"unknown loss {config.loss!r}; choose from {', '.join(LOSSES)}")
    if config.epochs < 1:
        raise UsageError(f"epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {config.batch_size}")
    if not 8 <= config.image_size <= 1024:
        raise UsageError(f"image size must be between 8 and 1024 pixels, got {config.image_size}")
    if config.arch != "custom":
        smallest = min_image_size(config.arch, **config.arch_options)
        if config.image_size < smallest:
            raise UsageError(
                f"{config.arch} needs an image size of at least {smallest} pixels, got {config.image_size} "
                f"(use --image-size {smallest} or more)"
            )
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if config.max_minutes is not None and not (config.max_minutes > 0 and math.isfinite(config.max_minutes)):
        raise UsageError(f"the time budget must be a positive number of minutes, got {config.max_minutes}")
    if config.lr <= 0 or not math.isfinite(config.lr):
        raise UsageError(f"the learning rate must be a positive number, got {config.lr}")
    if not 0 <= config.cutout < config.image_size:
        raise UsageError(f"cutout must be between 0 and the image size - 1 ({config.image_size - 1}), got {config.cutout}")
    if not 0 <= config.tta_shift <= config.image_size // 4:
        raise UsageError(f"the test-time shift must be between 0 and a quarter of the image size "
                         f"({config.image_size // 4} pixels), got {config.tta_shift}")
    if not 0 <= config.label_smoothing < 1:
        raise UsageError(f"label smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.resize not in ("crop", "squash"):
        raise UsageError(f"resize policy must be 'crop' or 'squash', got {config.resize!r}")
    if config.class_weight not in CLASS_WEIGHTS:
        raise UsageError(f"class weight must be 'balanced' or 'none', got {config.class_weight!r}")
    if config.normalization not in NORMALIZATIONS:
        raise UsageError(f"unknown normalization {config.normalization!r}; expected one of {', '.join(NORMALIZATIONS)}")


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"bfloat16"``: what ``precision`` means on this machine.

    >>> resolve_precision("float32")
    'float32'
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bfloat16" if cpu_has_bfloat16_units() else "float32"


def cpu_has_bfloat16_units() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX or
    AVX-512 BF16, as Linux reports them); elsewhere bfloat16 is emulated, and slower."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False
