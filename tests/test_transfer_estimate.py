"""The leave-one-out estimate of a taught model (issue 22): what it counts and how it says it."""

from __future__ import annotations

import numpy as np
import pytest

from imagerec.core.errors import UsageError
from imagerec.transfer.estimate import confusion_text, enough_examples, leave_one_out, plural
from imagerec.transfer.heads import ImprintHead, LogisticHead


def clusters(seed: int = 0, sizes=(6, 6, 6), spread: float = 0.4, dim: int = 16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(sizes), dim))
    X = np.concatenate([centre + rng.normal(0, spread, (n, dim)) for centre, n in zip(centres, sizes)])
    labels = [name for name, n in zip(["mug", "cup", "glass"], sizes) for _ in range(n)]
    return X.astype(np.float32), labels


def fit_imprint(X, labels, classes):
    return ImprintHead().fit(X, np.array([classes.index(label) for label in labels]), classes)


def test_imprint_estimate_is_exactly_refitting_without_each_example():
    X, labels = clusters(spread=1.2)  # overlapping: some examples are confused
    classes = ["mug", "cup", "glass"]
    estimate = leave_one_out(X, labels, fit_imprint(X, labels, classes))
    wrong = 0
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        head = fit_imprint(X[keep], [labels[j] for j in np.flatnonzero(keep)], classes)
        wrong += head.predict(X[i:i + 1])[0] != labels[i]
    assert estimate.examples == 18
    assert estimate.accuracy == pytest.approx(1 - wrong / 18)
    assert 0 < wrong  # the case really holds confusions
    assert sum(score.of - score.correct for score in estimate.per_class) == wrong
    assert sum(c.count for c in estimate.confusions) == wrong


def test_separate_classes_are_all_recognised_with_no_confusions():
    X, labels = clusters(spread=0.05)
    estimate = leave_one_out(X, labels, fit_imprint(X, labels, ["mug", "cup", "glass"]))
    assert estimate.accuracy == 1.0 and estimate.confusions == []
    assert [(s.label, s.correct, s.of) for s in estimate.per_class] == [("mug", 6, 6), ("cup", 6, 6), ("glass", 6, 6)]


def test_the_confusions_that_matter_come_first_in_plain_words():
    # 12 mugs, 3 of which sit right on the cups; 12 cups; 4 glasses, 1 on the mugs.
    rng = np.random.default_rng(1)
    mug, cup, glass = np.eye(3, 8)
    X = np.concatenate([mug + rng.normal(0, 0.05, (9, 8)), cup + rng.normal(0, 0.05, (3, 8)),
                        cup + rng.normal(0, 0.05, (12, 8)),
                        glass + rng.normal(0, 0.05, (3, 8)), mug + rng.normal(0, 0.05, (1, 8))])
    labels = ["mug"] * 12 + ["cup"] * 12 + ["glass"] * 4
    estimate = leave_one_out(X, labels, fit_imprint(X, labels, ["mug", "cup", "glass"]))
    assert [c.text for c in estimate.confusions] == ["3 of 12 mugs look like cups", "1 of 4 glasses looks like a mug"]
    assert estimate.to_dict()["confusions"][0] == {"label": "mug", "as": "cup", "count": 3, "of": 12,
                                                  "text": "3 of 12 mugs look like cups"}
    assert estimate.to_dict()["method"] == "leave-one-out"
    assert "3 of 12 mugs look like cups" in estimate.summary()


def test_examples_taught_but_not_given_still_count_in_an_imprint_class_mean():
    # The head was also taught two cups that are not given (say, the model was
    # opened from a file): held out, the first cup is nearer the full cup mean.
    X = np.array([[0.6, 0.8], [1.0, 0.0], [0.8, 0.6], [0.8, 0.6]], np.float32)
    labels = ["cup", "cup", "mug", "mug"]
    alone = fit_imprint(X, labels, ["cup", "mug"])
    more = fit_imprint(np.concatenate([X, [[0.0, 1.0], [0.0, 1.0]]]), labels + ["cup", "cup"], ["cup", "mug"])
    assert leave_one_out(X, labels, alone).per_class[0].correct == 0
    assert leave_one_out(X, labels, more).per_class[0].correct == 1
    assert leave_one_out(X, labels, more).examples == 4  # only the given examples are held out


def test_a_class_with_one_example_cannot_recognise_it_held_out():
    X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.7, 0.7]], np.float32)
    labels = ["mug", "mug", "cup", "cup", "bowl"]
    estimate = leave_one_out(X, labels, fit_imprint(X, labels, ["mug", "cup", "bowl"]))
    bowl = next(s for s in estimate.per_class if s.label == "bowl")
    assert (bowl.correct, bowl.of) == (0, 1)
    assert any(c.label == "bowl" and c.text.startswith("1 of 1 bowl looks like") for c in estimate.confusions)


def test_other_heads_are_refitted_without_each_example():
    X, labels = clusters(sizes=(5, 5), spread=0.05)
    head = LogisticHead(C=1.0).fit(X, np.repeat([0, 1], 5), ["mug", "cup"])
    estimate = leave_one_out(X, labels, head)
    assert estimate.accuracy == 1.0 and estimate.examples == 10


def test_labels_must_be_the_heads_classes():
    X, labels = clusters(sizes=(2, 2))
    head = fit_imprint(X, labels, ["mug", "cup"])
    with pytest.raises(UsageError, match="'plate'"):
        leave_one_out(X, labels[:-1] + ["plate"], head)
    with pytest.raises(UsageError):
        leave_one_out(X[:3], labels, head)


def test_an_estimate_needs_two_classes_with_two_examples_each():
    assert not enough_examples([])
    assert not enough_examples(["a", "a", "a", "b"])
    assert enough_examples(["a", "a", "b", "b", "c"])


@pytest.mark.parametrize("label, expected", [("mug", "mugs"), ("glass", "glasses"), ("box", "boxes"),
                                             ("puppy", "puppies"), ("toy", "toys"), ("hot dog", "hot dogs"),
                                             ("my snacks", "my snacks"), ("5 Galoon", "5 Galoons")])
def test_plurals_of_class_names(label, expected):
    assert plural(label) == expected


def test_confusion_text_agrees_with_its_counts():
    assert confusion_text("mug", "cup", 3, 12) == "3 of 12 mugs look like cups"
    assert confusion_text("mug", "apple", 1, 12) == "1 of 12 mugs looks like an apple"
    assert confusion_text("owl", "cat", 2, 2) == "2 of 2 owls look like cats"
