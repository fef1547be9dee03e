"""imagerec.backends.litert: outputs, extra outputs, batching, bad model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imagerec.backends import Backend
from imagerec.backends.litert import LiteRTBackend, add_outputs
from imagerec.core.errors import ModelFileError, UsageError

MODEL = "mobilenet_v2_1.0_224_quant.tflite"
EXTRA = {"embedding": "MobilenetV2/Logits/AvgPool", "logits": "MobilenetV2/Logits/Squeeze1"}


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)


def test_extra_outputs_do_not_change_the_scores(models_dir: Path, batch: np.ndarray) -> None:
    plain = LiteRTBackend(models_dir / MODEL, num_threads=1)
    rich = LiteRTBackend(models_dir / MODEL, num_threads=1, extra_outputs=EXTRA)
    assert isinstance(rich, Backend)
    expected = plain.run(batch)["scores"]
    got = rich.run(batch, ("scores", "embedding", "logits"))
    assert np.array_equal(got["scores"], expected)
    assert got["embedding"].shape == (3, 1280) and got["logits"].shape == (3, 1001)
    assert got["embedding"].min() >= 0  # a ReLU6 average pool, dequantised
    # the uint8 softmax output and the softmax of the logits agree on the winner
    assert np.array_equal(got["logits"].argmax(1), expected.argmax(1))


def test_batch_equals_single_runs_and_scores_are_dequantised(models_dir: Path, batch: np.ndarray) -> None:
    backend = LiteRTBackend(models_dir / MODEL, num_threads=2)
    together = backend.run(batch)["scores"]
    apart = np.concatenate([backend.run(batch[i : i + 1])["scores"] for i in range(len(batch))])
    assert np.array_equal(together, apart)
    assert together.dtype == np.float32
    # a uint8 softmax loses the mass spread thinly over many classes (noise
    # input), which is why recognizers prefer the logits when they exist
    assert np.all((together.sum(axis=1) > 0.5) & (together.sum(axis=1) < 1.01))
    assert np.all(np.mod(together, 1 / 256) == 0)
    assert backend.input_size == (224, 224)


def test_embedder_model_output_is_the_embedding(models_dir: Path, batch: np.ndarray) -> None:
    backend = LiteRTBackend(
        models_dir / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        extra_outputs={"embedding": "MobilenetV1/Logits/AvgPool_1a/AvgPool"},
    )
    out = backend.run(batch, ("scores", "embedding"))
    assert out["embedding"].shape == (3, 1024)
    assert np.array_equal(out["embedding"], out["scores"])


def test_wrong_input_and_unknown_output_are_usage_errors(models_dir: Path) -> None:
    backend = LiteRTBackend(models_dir / MODEL)
    with pytest.raises(UsageError, match="uint8 batch"):
        backend.run(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(UsageError, match="uint8 batch"):
        backend.run(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(UsageError, match="no 'embedding' output"):
        backend.run(np.zeros((1, 224, 224, 3), np.uint8), ("embedding",))


def test_bad_model_files(tmp_path: Path, models_dir: Path) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a TensorFlow Lite model"):
        LiteRTBackend(text)
    with pytest.raises(ModelFileError, match="cannot read"):
        LiteRTBackend(tmp_path / "missing.tflite")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes((models_dir / MODEL).read_bytes()[:100_000])
    with pytest.raises(ModelFileError):
        LiteRTBackend(truncated)
    with pytest.raises(ModelFileError, match="no tensor named"):
        add_outputs((models_dir / MODEL).read_bytes(), ["no/such/tensor"])


def test_a_rewritten_model_keeps_its_metadata_and_can_be_rewritten_again(models_dir: Path, batch: np.ndarray) -> None:
    from imagerec.backends.litert import read_metadata, with_metadata

    original = with_metadata((models_dir / MODEL).read_bytes(), "imagerec", b'{"labels": []}')
    once = add_outputs(original, [EXTRA["embedding"]])
    twice = add_outputs(once, [EXTRA["embedding"], EXTRA["logits"]])  # an output already listed is not listed twice
    assert read_metadata(twice)["imagerec"] == b'{"labels": []}'
    backend = LiteRTBackend(twice, num_threads=1, extra_outputs=EXTRA)
    assert backend.outputs == ("scores", "embedding", "logits")
    got = backend.run(batch, ("scores", "embedding", "logits"))
    want = LiteRTBackend(models_dir / MODEL, num_threads=1, extra_outputs=EXTRA).run(batch, ("scores", "embedding", "logits"))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
