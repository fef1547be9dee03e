"""Teach imagerec new objects without retraining the network.

A pretrained network is used as a frozen feature extractor (the *backbone*);
only a small *head* is trained on its embeddings — or not trained at all:
the ``imprint`` head makes a class from the mean of its examples, so one
photo teaches a new class.

>>> import imagerec
>>> shots = "../shared/photos/few-shot"
>>> model = imagerec.learn({"cat": [f"{shots}/cat_train_0.bmp"], "dog": [f"{shots}/dog_train_0.bmp"],
...                         "hot dog": [f"{shots}/hotdog_train_0.bmp", f"{shots}/hotdog_train_1.bmp"]},
...                        head="imprint")
>>> model.predict("../shared/photos/hot_dog.jpg", top_k=1)[0][0].label
'hot dog'

Modules: :mod:`~imagerec.transfer.learning` (``learn``, ``add_examples``,
``gather``), :mod:`~imagerec.transfer.backbones` (zoo, pooled and Keras
backbones by name), :mod:`~imagerec.transfer.features` (cached extraction),
:mod:`~imagerec.transfer.heads` (logistic / dense / imprint heads, the
"unknown" threshold), :mod:`~imagerec.transfer.learned` (the ``.imagerec``
file), :mod:`~imagerec.transfer.finetune` (``fine_tune``: unfreeze the last
layers of a Keras backbone). This package only re-exports their public names.
"""

from __future__ import annotations

from .finetune import fine_tune
from .learning import add_examples, gather, learn, recalibrated
from .learned import LearnedRecognizer, load_learned

__all__ = ["learn", "add_examples", "gather", "recalibrated", "load_learned", "fine_tune", "LearnedRecognizer"]
