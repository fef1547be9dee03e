"""imagerec.architectures: the builders, and the torch graph runner that trains their layers."""

from __future__ import annotations

import numpy as np
import pytest

from imagerec.architectures import build, course_cnn, fast_resnet, logits_model
from imagerec.core.errors import UsageError


def _layers(model, kind: str) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == kind]


@pytest.mark.slow
def test_course_cnn_is_the_course_network() -> None:
    model = course_cnn(input_shape=(32, 32, 3), num_classes=10)
    assert [layer.filters for layer in _layers(model, "Conv2D")] == [32, 32, 64, 64]
    assert [layer.rate for layer in _layers(model, "Dropout")] == [0.25, 0.25, 0.5]
    assert len(_layers(model, "MaxPooling2D")) == 2
    assert [layer.units for layer in _layers(model, "Dense")] == [512, 10]
    assert model.output_shape == (None, 10)
    # The CIFAR-10 network of the course has 1,250,858 parameters.
    assert model.count_params() == 1_250_858


@pytest.mark.slow  # over 4 s here
def test_course_cnn_activation_is_used_everywhere() -> None:
    model = course_cnn(num_classes=3, activation="elu")
    for layer in _layers(model, "Conv2D") + _layers(model, "Dense")[:1]:
        assert layer.activation.__name__ == "elu"
    with pytest.raises(UsageError, match="unknown activation 'relux'"):
        course_cnn(activation="relux")


def test_fast_resnet_shape() -> None:
    model = fast_resnet(input_shape=(32, 32, 3), num_classes=10)
    assert model.get_layer("embedding").output.shape == (None, 256)
    assert model.get_layer("whiten").output.shape == (None, 31, 31, 24)  # 2·3·2² filters, 2×2, no padding
    norms = _layers(model, "BatchNormalization")
    assert len(norms) == 6 and not any(norm.scale for norm in norms)
    assert not _layers(model, "Add")
    assert model.output_shape == (None, 10)
    shortcuts = fast_resnet(num_classes=10, residual=True, widths=(16, 32), stem=8)
    assert len(_layers(shortcuts, "Add")) == 2 and len(_layers(shortcuts, "BatchNormalization")) == 5
    with pytest.raises(UsageError, match="at least 9×9"):
        build("fast_resnet", input_shape=(8, 8, 3))


def test_fast_resnet_convolutions_start_as_the_identity_on_their_first_channels() -> None:
    model = fast_resnet(input_shape=(32, 32, 3), num_classes=10)
    kernel = model.get_layer("stage1b_conv").kernel.numpy()  # 64 → 64
    expected = np.zeros((3, 3, 64, 64), np.float32)
    expected[1, 1, np.arange(64), np.arange(64)] = 1
    np.testing.assert_array_equal(kernel, expected)
    wider = model.get_layer("stage2a_conv").kernel.numpy()  # 64 → 256: the first 64 filters pass through
    assert wider[1, 1, 5, 5] == 1 and np.count_nonzero(wider[:, :, :, :64]) == 64
    assert np.count_nonzero(wider[:, :, :, 64:]) > 0.9 * wider[:, :, :, 64:].size  # the rest keep a random start


def test_build_by_name_and_unknown_names() -> None:
    assert build("fast_resnet", num_classes=2, widths=(8,), stem=4).name == "fast_resnet"
    with pytest.raises(UsageError, match="unknown architecture 'vgg'"):
        build("vgg")


def test_logits_model_shares_weights() -> None:
    model = course_cnn(input_shape=(16, 16, 3), num_classes=3, width=4, dense=8)
    logits = logits_model(model)
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    probabilities = np.asarray(model(x, training=False).detach())
    from imagerec.core.arrays import softmax

    np.testing.assert_allclose(softmax(np.asarray(logits(x, training=False).detach())), probabilities, atol=1e-6)


def _compare(model, training: bool, seed: int = 0) -> float:
    """Largest difference between the torch graph runner and Keras, same weights, same input."""
    import torch

    from imagerec.training import TorchGraph

    x = torch.from_numpy(np.random.default_rng(seed).random((4, 16, 16, 3)).astype(np.float32))
    torch.manual_seed(0)
    with torch.no_grad():
        ours = TorchGraph(model)(x.permute(0, 3, 1, 2), training=training)
        theirs = model(x, training=training)
    return float(np.abs(ours.numpy() - theirs.detach().numpy()).max())


@pytest.mark.parametrize("activation", ["relu", "gelu", "elu", "selu", "tanh", "swish", "leaky_relu", "softplus"])
def test_torch_graph_matches_keras_inference(activation: str) -> None:
    model = course_cnn(input_shape=(16, 16, 3), num_classes=3, width=4, dense=8, activation=activation)
    assert _compare(model, training=False) < 1e-5


def test_torch_graph_matches_keras_batch_norm_in_training_mode() -> None:
    model = fast_resnet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16), stem=4)
    # Dropout-free network: training mode differs only in batch statistics, which must agree.
    assert _compare(model, training=True) < 1e-4


def test_torch_graph_hands_unknown_layers_to_keras() -> None:
    import keras

    from imagerec.training import TorchGraph

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.LayerNormalization()(x)  # not in the runner's table
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.Conv2D(4, 3, strides=2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    assert _compare(model, training=False) < 1e-5
    graph = TorchGraph(model)
    import torch

    graph(torch.zeros(1, 3, 16, 16), training=False)
    assert set(graph.fallback_layers) >= {model.layers[2].name, model.layers[3].name}


def test_a_model_the_graph_runner_cannot_walk_runs_through_keras() -> None:
    import keras

    from imagerec.training import ModelRunner

    class Pooled(keras.Model):  # subclassed, not functional: no graph to walk
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(2, activation="softmax")

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    model = Pooled()
    model(np.zeros((1, 8, 8, 3), np.float32))
    runner = ModelRunner(model, image_size=8)
    assert runner.engine == "keras" and not runner.outputs_logits  # its outputs are probabilities
    out = runner.forward(np.full((2, 8, 8, 3), 255, np.uint8), training=False).detach().numpy()
    expected = np.asarray(model(np.ones((2, 8, 8, 3), np.float32)).detach())  # "unit": pixels / 255
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_min_image_size_and_too_small_inputs_are_usage_errors() -> None:
    from imagerec.architectures import min_image_size

    assert min_image_size("course_cnn") == 10 and min_image_size("fast_resnet", widths=(8, 8)) == 5
    assert min_image_size("fast_resnet", widths=(8, 8), stem=4) == 4
    assert build("course_cnn", input_shape=(10, 10, 3), num_classes=2, width=4, dense=8).output_shape == (None, 2)
    with pytest.raises(UsageError, match="course_cnn needs images of at least 10×10 pixels, got 9×9"):
        build("course_cnn", input_shape=(9, 9, 3), num_classes=2)
    with pytest.raises(UsageError, match="fast_resnet needs images of at least 9×9"):
        build("fast_resnet", input_shape=(8, 8, 3), num_classes=2)
    assert build("fast_resnet", input_shape=(9, 9, 3), num_classes=2, widths=(8, 8, 8)).output_shape == (None, 2)
