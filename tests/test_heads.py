"""imagerec.transfer.heads: scikit-learn's conventions, the dense-layer description exports use, the file state."""

from __future__ import annotations

import numpy as np
import pytest

from imagerec.core.arrays import l2_normalize, softmax
from imagerec.core.errors import UsageError
from imagerec.transfer.heads import HEADS, head_from_state, make_head

KINDS = sorted(HEADS)
# A smaller dense head, enough for these easy classes; the others keep their defaults.
OPTIONS = {"dense": {"units": 32, "epochs": 40}}


def _data(seed: int = 0, per_class: int = 12, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dim) * 3
    X = np.concatenate([rng.normal(size=(per_class, dim)) + c for c in centres]).astype(np.float32)
    return X, np.repeat([0, 1, 2], per_class)


@pytest.fixture(scope="module", params=KINDS)
def fitted(request):
    """A fitted head of each kind, taught four classes of which the last has no example yet."""
    X, y = _data()
    head = make_head(request.param, **OPTIONS.get(request.param, {}))
    return head.fit(X, y, ["a", "b", "c", "empty"])


def _through_layers(head, X: np.ndarray) -> np.ndarray:
    x = l2_normalize(X)
    for layer in head.dense_layers():
        assert layer.weights.dtype == np.float32 and layer.weights.shape[0] == x.shape[1]
        x = layer.apply(x)
    return softmax(x)


def test_dense_layers_and_a_softmax_reproduce_predict_proba(fitted):
    X, _ = _data(seed=1)
    np.testing.assert_allclose(_through_layers(fitted, X), fitted.predict_proba(X), atol=1e-5)
    # The confidence is the same kind of layer for every head; its largest output is confidence().
    cosine = fitted.confidence_layer().apply(l2_normalize(X))
    np.testing.assert_allclose(cosine.max(axis=1), fitted.confidence(X), atol=1e-6)
    assert np.all(cosine[:, 3] == -1.0)


def test_sklearn_clone_gives_an_unfitted_head_with_the_same_parameters(fitted):
    from sklearn.base import clone, is_classifier

    copy = clone(fitted)
    assert type(copy) is type(fitted) and copy is not fitted
    assert copy.get_params() == fitted.get_params()
    assert not [name for name in vars(copy) if name.endswith("_")]  # nothing learned
    assert is_classifier(fitted)
    # The copy learns on its own; the original is untouched.
    X, y = _data(seed=2)
    before = fitted.predict_proba(X)
    copy.fit(X[y < 2], y[y < 2], ["x", "y"])
    assert copy.classes_.tolist() == ["x", "y"] and np.array_equal(fitted.predict_proba(X), before)


def test_parameters_are_the_constructor_arguments_as_given(fitted):
    params = fitted.get_params(deep=True)
    assert params == type(fitted)(**params).get_params()
    changed = type(fitted)(**params).set_params(seed=7) if "seed" in params else None
    assert changed is None or changed.seed == 7
    with pytest.raises(UsageError, match="no parameter 'colour'"):
        type(fitted)().set_params(colour="red")
    with pytest.raises(ValueError):  # what scikit-learn's search tools expect
        type(fitted)().set_params(colour="red")


def test_learned_state_ends_in_an_underscore_and_classes_are_labels(fitted):
    assert isinstance(fitted.classes_, np.ndarray)
    assert fitted.classes_.tolist() == fitted.labels_ == ["a", "b", "c", "empty"]
    X, y = _data(seed=3)
    assert set(fitted.predict(X).tolist()) <= {"a", "b", "c"}
    assert fitted.score(X, fitted.classes_[y]) > 0.8
    assert fitted.class_counts_.tolist() == [12, 12, 12, 0]


def test_a_saved_head_describes_itself_the_same(fitted):
    loaded = head_from_state(fitted.kind, fitted.params(), fitted.arrays(), fitted.labels_)
    X, _ = _data(seed=4)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    for mine, theirs in zip(loaded.dense_layers(), fitted.dense_layers()):
        np.testing.assert_array_equal(mine.weights, theirs.weights)
        assert mine.relu == theirs.relu


@pytest.mark.parametrize("kind", KINDS)
def test_fit_takes_class_labels_like_scikit_learn(kind):
    X, y = _data()
    names = np.array(["owl", "cat", "dog"])[y]
    head = make_head(kind, **OPTIONS.get(kind, {})).fit(X, names)
    assert head.classes_.tolist() == ["cat", "dog", "owl"]  # sorted, as scikit-learn orders them
    assert head.score(X, names) > 0.9
    # Adding examples of a new class keeps the old ones, and the description follows.
    head.add(X[:3] * -1, ["bat"] * 3)
    assert head.labels_ == ["cat", "dog", "owl", "bat"]
    np.testing.assert_allclose(_through_layers(head, X), head.predict_proba(X), atol=1e-5)


def test_scikit_learn_cross_validates_a_head():
    from sklearn.model_selection import cross_val_score

    X, y = _data(per_class=10)
    scores = cross_val_score(make_head("imprint"), X, np.array(["a", "b", "c"])[y], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_refits_keep_the_C_the_logistic_head_chose():
    X, y = _data()
    head = make_head("logistic").fit(X, y, ["a", "b", "c"])
    assert head.C is None and head.C_ in head.Cs
    assert head.clone().C == head.C_  # what add() and the held-out folds refit with
    from sklearn.base import clone

    assert clone(head).C is None  # scikit-learn's clone: the parameters as given


def test_logistic_scaling_trusts_each_feature_only_with_enough_examples():
    from imagerec.transfer.heads import LogisticHead, shrunk_scale

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 4)) * np.array([1.0, 0.1, 0.1, 0.1])
    assert np.allclose(shrunk_scale(X, 1000.0), X.std(axis=0), rtol=0.06)  # n ≫ prior: each its own
    few = shrunk_scale(X[:10], 1000.0)
    assert few.max() / few.min() < 1.02  # n ≪ prior: one common scale
    assert np.allclose(shrunk_scale(X[:10], 0.0), X[:10].std(axis=0), rtol=1e-4)

    y = np.repeat([0, 1], 10)
    Z = rng.normal(size=(20, 6)) + np.repeat(np.eye(2, 6) * 3, 10, axis=0)
    head = LogisticHead(0.1).fit(Z, y, ["a", "b"])
    assert head.params()["scale_prior"] == 1000.0
    # A head saved before the setting existed scaled every feature by its own
    # deviation: loading and refitting it (learn --add) keeps doing so.
    old = {k: v for k, v in head.params().items() if k != "scale_prior"}
    loaded = head_from_state("logistic", old, head.arrays(), ["a", "b"])
    assert loaded.clone().scale_prior == 0.0


def test_bad_targets_are_refused_in_one_line():
    X, y = _data()
    with pytest.raises(UsageError, match="36 embeddings but 35 targets"):
        make_head("imprint").fit(X, y[:-1], ["a", "b", "c"])
    with pytest.raises(UsageError, match="at least 2 classes"):
        make_head("logistic").fit(X[y == 0], y[y == 0], ["a", "b"])
    with pytest.raises(UsageError, match="unique"):
        make_head("imprint").fit(X, y, ["a", "a", "c"])
    with pytest.raises(UsageError, match="class indices in 0..1"):
        make_head("imprint").fit(X, y, ["a", "b"])


# -- class weights ---------------------------------------------------------------------


def _imbalanced(seed: int, per_class: tuple[int, ...], dim: int = 8, spread: float = 1.0):
    """Three overlapping classes with ``per_class`` examples each (the last one small)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dim) * 1.5
    X = np.concatenate([rng.normal(size=(n, dim)) * spread + c for n, c in zip(per_class, centres)]).astype(np.float32)
    return X, np.repeat(np.arange(3), per_class)


@pytest.mark.parametrize("kind", ["logistic", "dense"])
def test_balanced_class_weights_raise_the_recall_of_a_small_class(kind):
    X, y = _imbalanced(0, (120, 120, 12))
    X_test, y_test = _imbalanced(1, (200, 200, 200))  # every class equally often: recall of each counts
    options = OPTIONS.get(kind, {})
    recalls = {}
    for weight in ("none", "balanced"):
        head = make_head(kind, class_weight=weight, **options).fit(X, y, ["a", "b", "small"])
        predicted = head.predict_proba(X_test).argmax(axis=1)
        recalls[weight] = float((predicted[y_test == 2] == 2).mean())
    assert recalls["balanced"] > recalls["none"] + 0.1, recalls


@pytest.mark.parametrize("kind", ["logistic", "dense"])
def test_the_default_class_weight_is_balanced_and_saved_files_remember_theirs(kind):
    X, y = _imbalanced(0, (60, 60, 6))
    options = OPTIONS.get(kind, {})
    default = make_head(kind, **options).fit(X, y, ["a", "b", "small"])
    balanced = make_head(kind, class_weight="balanced", **options).fit(X, y, ["a", "b", "small"])
    assert default.params()["class_weight"] == "balanced"
    np.testing.assert_allclose(default.predict_proba(X), balanced.predict_proba(X), atol=1e-6)

    unweighted = make_head(kind, class_weight="none", **options).fit(X, y, ["a", "b", "small"])
    loaded = head_from_state(kind, unweighted.params(), unweighted.arrays(), ["a", "b", "small"])
    assert loaded.class_weight == "none" and loaded.clone().class_weight == "none"  # `learn --add` refits alike
    # A file written before class weights existed was fitted unweighted, and refits so.
    old = {k: v for k, v in balanced.params().items() if k != "class_weight"}
    assert head_from_state(kind, old, balanced.arrays(), ["a", "b", "small"]).clone().class_weight == "none"


def test_a_bad_class_weight_is_refused_in_one_line():
    for kind in ("logistic", "dense"):
        with pytest.raises(UsageError, match="class weight must be 'balanced' or 'none', got 'equal'"):
            make_head(kind, class_weight="equal")
    assert make_head("logistic", class_weight="NONE").fit(*_data(), ["a", "b", "c"]).params()["class_weight"] == "none"
    with pytest.raises(UsageError, match="class weights apply to the logistic and dense heads"):
        make_head("imprint", class_weight="balanced")
    with pytest.raises(UsageError, match="no option 'colour'"):
        make_head("dense", colour="red")
