"""Train a Keras network on labelled images: ``imagerec.train`` and its parts.

==================  =====================================================
:mod:`.api`         :func:`train` and :class:`TrainResult`
:mod:`.config`      :class:`TrainConfig`, the choices, defaults, checks
:mod:`.trainer`     the epoch loop, checkpoints, early stopping, budget
:mod:`.resume`      the ``<model>.state.pt`` file and the resume checks
:mod:`.torch_graph` a Keras model's layers run as PyTorch ops
:mod:`.optim`       optimizers, Lookahead, schedules, losses
:mod:`.whitening`   the fixed whitening layer of ``fast_resnet``
:mod:`.report`      the epoch progress bars and learning curves
:mod:`.time_budget` how many epochs fit in ``max_minutes``
==================  =====================================================

>>> from imagerec.training import TrainConfig, defaults_for
>>> defaults_for("fast_resnet")["optimizer"], TrainConfig().arch
('sgd', 'fast_resnet')
"""

from __future__ import annotations

from .api import TrainResult, train
from .config import (
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    defaults_for,
    make_config,
    resolve_precision,
)
from .torch_graph import ModelRunner, TorchGraph
from .whitening import whiten_from_data

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "ModelRunner",
    "TorchGraph",
    "TrainConfig",
    "TrainResult",
    "defaults_for",
    "make_config",
    "resolve_precision",
    "train",
    "whiten_from_data",
]
