"""Data for training and evaluating: datasets, augmentation, test-time views, a synthetic set.

The public names are gathered here (``from imagerec.data import load_dataset``);
each lives in the module that owns it.

>>> from imagerec.data import load_dataset
>>> load_dataset({"cat": ["../shared/photos/cat_720p.jpg"], "bird": ["../shared/photos/bird.bmp"]}).classes
['bird', 'cat']
"""

from __future__ import annotations

from .augment import augment
from .datasets import Dataset, DatasetSource, DatasetWarning, datasets_dir, load_dataset, read_class_folders
from .synthetic import SHAPES, make_shapes
from .views import PredictionView, apply_view, prediction_views

__all__ = [
    "Dataset", "DatasetSource", "DatasetWarning", "load_dataset", "read_class_folders", "datasets_dir", "make_shapes",
    "SHAPES", "augment", "PredictionView", "prediction_views", "apply_view",
]
