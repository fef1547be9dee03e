"""recognizer.explain and `imagerec explain`: heat maps that point at what the model recognised."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import imagerec
from imagerec.cli import app, run_app
from imagerec.core.errors import UsageError
from imagerec.explain import explain_photo

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
# The macaw in parrot.jpg (512×929): head, wings and tail, little background.
PARROT_BOX = (120, 90, 470, 760)


def _scenes(photos_dir: Path, count: int, seed: int = 0) -> list[tuple[Image.Image, tuple[int, int, int, int]]]:
    """The macaw pasted at random places on square canvases (all of it reaches the model), half plain
    grey, half noise; its box in each."""
    rng = np.random.default_rng(seed)
    parrot = Image.open(photos_dir / "parrot.jpg").convert("RGB").crop(PARROT_BOX)
    scenes = []
    for i in range(count):
        height = int(rng.integers(220, 300))
        width = round(height * parrot.width / parrot.height)
        item = parrot.resize((width, height), Image.Resampling.BILINEAR)
        if i % 2:
            noise = rng.integers(60, 196, size=(560, 560, 3), dtype=np.uint8)
            canvas = Image.fromarray(noise, "RGB")
        else:
            canvas = Image.new("RGB", (560, 560), (128, 128, 128))
        left, top = int(rng.integers(0, 560 - width)), int(rng.integers(0, 560 - height))
        canvas.paste(item, (left, top))
        scenes.append((canvas, (left, top, left + width, top + height)))
    return scenes


def _inside(peak: list[int], box: tuple[int, int, int, int]) -> bool:
    x, y = peak
    return box[0] <= x < box[2] and box[1] <= y < box[3]


@pytest.mark.slow
def test_the_peak_falls_on_the_pasted_object(recognizer, photos_dir: Path) -> None:
    scenes = _scenes(photos_dir, 10)
    # The object's class is named: on a small object the model's own answer is sometimes another class.
    explained = [recognizer.explain(canvas, label="macaw") for canvas, _ in scenes]
    hits = [_inside(heat.peak, box) for heat, (_, box) in zip(explained, scenes)]
    assert sum(hits) >= 9, hits


def test_a_heat_map_is_in_the_photos_own_pixels(recognizer, photos_dir: Path) -> None:
    heat = recognizer.explain(photos_dir / "cat_720p.jpg")
    assert heat.label == "Egyptian cat" and heat.method == "occlusion"
    assert heat.map.shape == (720, 1280) and heat.map.dtype == np.float32
    x, y = heat.peak
    assert 0 <= x < 1280 and 0 <= y < 720
    assert heat.map[y, x] == heat.map.max() > 0
    # A centre crop: the strips the model never saw carry no heat.
    assert not heat.map[:, :200].any() and not heat.map[:, -200:].any()
    overlay = heat.overlay()
    assert overlay.size == (1280, 720) and overlay.mode == "RGB"
    assert np.asarray(overlay).tolist() != np.asarray(heat.photo).tolist()


def test_a_chosen_label_is_explained_and_a_wrong_one_refused(recognizer, photos_dir: Path) -> None:
    heat = recognizer.explain(photos_dir / "parrot.jpg", label="lorikeet")
    assert heat.label == "lorikeet" and heat.index == recognizer.labels.index("lorikeet")
    with pytest.raises(UsageError, match="not one of the model's"):
        recognizer.explain(photos_dir / "parrot.jpg", label="no such thing")


@pytest.mark.parametrize("model", ["pets.imagerec", "shapes.onnx", "shapes.tflite",
                                   pytest.param("shapes.keras", marks=pytest.mark.slow)])  # converted to ONNX first; Keras for Grad-CAM
def test_every_model_kind_explains(model: str, photos_dir: Path, models_dir: Path) -> None:
    recognizer = imagerec.load(str(LEGACY / model))
    heat = recognizer.explain(photos_dir / "hot_dog.jpg")
    assert heat.label in recognizer.labels
    assert heat.method == ("grad-cam" if model.endswith(".keras") else "occlusion")  # auto: gradients where Keras gives them
    assert heat.map.shape == (384, 512)
    assert heat.label == recognizer.predict(photos_dir / "hot_dog.jpg", top_k=1)[0].closest.label


def test_cli_writes_an_overlay_per_photo_and_json(tmp_path: Path, photos_dir: Path, models_dir: Path) -> None:
    out = tmp_path / "out"
    photos = [str(photos_dir / "hot_dog.jpg"), str(photos_dir / "parrot.jpg")]
    result = CliRunner().invoke(app, ["explain", *photos, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["path"] for row in rows] == photos
    assert [row["label"] for row in rows] == ["hotdog", "macaw"]
    for row in rows:
        assert row["method"] == "occlusion" and len(row["peak"]) == 2
        written = Image.open(row["file"])
        assert written.size == Image.open(row["path"]).size
        assert Path(row["file"]).parent == out


def test_cli_explains_a_chosen_label_in_words(tmp_path: Path, photos_dir: Path, models_dir: Path) -> None:
    result = CliRunner().invoke(app, ["explain", str(photos_dir / "parrot.jpg"), "--label", "lorikeet",
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "lorikeet" in result.stdout and "parrot" in result.stdout
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_cli_bad_photo_is_one_line_and_the_others_are_kept(tmp_path: Path, photos_dir: Path,
                                                           models_dir: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", str(bad), str(photos_dir / "hot_dog.jpg"), "-o", str(out), "--json"])
    assert result.exit_code == 1
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(row["path"]).name for row in rows] == ["hot_dog.jpg"]
    assert Path(rows[0]["file"]).exists()


def test_cli_unknown_label_is_a_usage_error(tmp_path: Path, photos_dir: Path, models_dir: Path, capsys) -> None:
    assert run_app(["explain", str(photos_dir / "parrot.jpg"), "--label", "zzz", "-o", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "not one of the model's" in error and "Traceback" not in error


def _redness(batch: np.ndarray) -> np.ndarray:
    """A stand-in model: the share of red pixels, as a two-class probability."""
    red = ((batch[..., 0] > 200) & (batch[..., 1] < 60)).mean(axis=(1, 2))
    return np.stack([red, 1 - red], axis=1)


@pytest.mark.parametrize("preprocessing", [
    imagerec.Preprocessing(size=(32, 32)),                       # centre crop of a wide photo
    imagerec.Preprocessing(size=(48, 48), resize="squash"),
    imagerec.Preprocessing(size=(64, 64), frame=8),              # picture inside a grey frame
], ids=["crop", "squash", "frame"])
def test_the_map_is_mapped_back_through_the_preprocessing(preprocessing) -> None:
    photo = Image.new("RGB", (300, 120), (128, 128, 128))
    photo.paste((255, 0, 0), (170, 20, 210, 60))  # inside the centre crop (90–210)
    heat = explain_photo(photo, _redness, preprocessing, labels=["red", "other"], label="red")
    assert heat.map.shape == (120, 300)
    assert _inside(heat.peak, (170, 20, 210, 60)), heat.peak
    if preprocessing.resize == "crop":  # what the crop cut away carries no heat
        assert not heat.map[:, :85].any() and not heat.map[:, 215:].any()


def test_an_embedding_model_has_nothing_to_explain(photos_dir: Path, models_dir: Path) -> None:
    embedder = imagerec.load("mobilenet_v1_embedder")
    with pytest.raises(UsageError, match="embedding model"):
        embedder.explain(photos_dir / "parrot.jpg")


# -- Grad-CAM: Keras models give gradients ---------------------------------------------------------


def _red_disc_model(size: int = 64):
    """A Keras CNN whose weights make it recognise a red disc: a redness filter, a 5×5 blob detector
    (stride 2: a 32×32 feature map, the layer Grad-CAM explains), a global max and a two-class softmax.
    It answers "red disc" exactly when a solid red patch is in view (noise and plain grey: "nothing")."""
    from imagerec.core.keras_backend import import_keras

    keras = import_keras()
    inputs = keras.Input((size, size, 3))
    redness = keras.layers.Conv2D(1, 1, activation="relu", name="redness")(inputs)
    blob = keras.layers.Conv2D(1, 5, strides=2, padding="same", activation="relu", name="blob")(redness)
    outputs = keras.layers.Dense(2, activation="softmax", name="scores")(keras.layers.GlobalMaxPooling2D()(blob))
    model = keras.Model(inputs, outputs)
    model.get_layer("redness").set_weights([np.array([1.0, -0.5, -0.5]).reshape(1, 1, 3, 1), np.array([-0.3])])
    model.get_layer("blob").set_weights([np.full((5, 5, 1, 1), 1 / 25), np.zeros(1)])
    model.get_layer("scores").set_weights([np.array([[20.0, -20.0]]), np.array([-5.0, 5.0])])
    return model


def _disc_scenes(count: int, seed: int = 0, side: int = 128) -> list[tuple[Image.Image, tuple[int, int, int, int]]]:
    """A red disc at a random place, half on plain grey, half on colour noise (red-ish pixels included); its box."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(count):
        if i % 2:
            canvas = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")
        else:
            grey = int(rng.integers(40, 220))
            canvas = Image.new("RGB", (side, side), (grey, grey, grey))
        radius = int(rng.integers(8, 14))
        x, y = (int(v) for v in rng.integers(radius, side - radius, 2))
        box = (x - radius, y - radius, x + radius, y + radius)
        ImageDraw.Draw(canvas).ellipse(box, fill=(230, 30, 30))
        scenes.append((canvas, box))
    return scenes


@pytest.fixture(scope="module")
def red_disc_file(tmp_path_factory) -> Path:
    """The red-disc CNN saved as a .keras file."""
    from imagerec.formats.keras import save_model

    path = tmp_path_factory.mktemp("keras") / "red_disc.keras"
    return save_model(_red_disc_model(), path, classes=["red disc", "nothing"],
                      preprocessing=imagerec.Preprocessing(size=(64, 64), normalization="unit"))


@pytest.fixture(scope="module")
def red_disc_keras(red_disc_file: Path) -> imagerec.Recognizer:
    """The red-disc .keras file opened as every user opens one."""
    return imagerec.load(str(red_disc_file))


@pytest.mark.slow  # imports Keras and exports the model to ONNX
@pytest.mark.parametrize("method", ["grad-cam", "occlusion"])
def test_both_methods_point_at_the_object_the_keras_model_recognises(red_disc_keras, method: str) -> None:
    scenes = _disc_scenes(20)
    assert [a.label for a in red_disc_keras.predict([canvas for canvas, _ in scenes], top_k=1)] == ["red disc"] * 20
    explained = [red_disc_keras.explain(canvas, method=method) for canvas, _ in scenes]
    assert {heat.method for heat in explained} == {method}
    assert {heat.label for heat in explained} == {"red disc"}
    hits = [_inside(heat.peak, box) for heat, (_, box) in zip(explained, scenes)]
    assert sum(hits) >= 18, hits  # ≥ 90 %


@pytest.mark.slow
def test_auto_is_grad_cam_for_keras_and_occlusion_otherwise(red_disc_keras, recognizer) -> None:
    canvas, box = _disc_scenes(1, seed=3)[0]
    heat = red_disc_keras.explain(canvas)
    assert heat.method == "grad-cam" and heat.runs == 2 and _inside(heat.peak, box)
    assert heat.map.shape == (128, 128) and heat.map.min() >= 0  # rectified, in the photo's pixels
    assert red_disc_keras.gives_gradients and not recognizer.gives_gradients
    assert recognizer.explain(canvas).method == "occlusion"


def test_grad_cam_is_refused_for_a_model_without_gradients(recognizer, photos_dir: Path) -> None:
    with pytest.raises(UsageError, match="gives no gradients"):
        recognizer.explain(photos_dir / "parrot.jpg", method="grad-cam")
    with pytest.raises(UsageError, match="unknown explanation method"):
        recognizer.explain(photos_dir / "parrot.jpg", method="saliency")


@pytest.mark.slow
def test_cli_method_says_which_was_used(red_disc_file: Path, tmp_path: Path) -> None:
    canvas, box = _disc_scenes(2, seed=5)[1]
    photo = tmp_path / "disc.png"
    canvas.save(photo)
    model = str(red_disc_file)
    result = CliRunner().invoke(app, ["explain", str(photo), "-m", model, "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["method"] == "grad-cam" and row["label"] == "red disc" and _inside(row["peak"], box)
    text = CliRunner().invoke(app, ["explain", str(photo), "-m", model, "--method", "occlusion",
                                    "-o", str(tmp_path / "out2")])
    assert text.exit_code == 0 and "occlusion" in text.stdout


def test_cli_grad_cam_on_a_model_without_gradients_is_a_usage_error(tmp_path: Path, photos_dir: Path,
                                                                    capsys) -> None:
    assert run_app(["explain", str(photos_dir / "parrot.jpg"), "--method", "grad-cam", "-o", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "gives no gradients" in error and "Traceback" not in error
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow  # rebuilds the Teachable Machine export in Keras 3
def test_a_keras2_h5_model_is_explained_by_grad_cam(models_dir: Path, photos_dir: Path) -> None:
    recognizer = imagerec.load(str(models_dir / "teachable-machine" / "water_bottles_keras_model.h5"))
    heat = recognizer.explain(photos_dir / "parrot.jpg")
    assert heat.method == "grad-cam" and heat.map.shape == (929, 512) and heat.map.max() > 0
    assert heat.label == recognizer.predict(photos_dir / "parrot.jpg", top_k=1)[0].label


@pytest.mark.slow  # builds a Keras backbone, exports it to ONNX, and rebuilds it for Grad-CAM
def test_a_recognizer_learned_on_a_keras_backbone_is_explained_through_its_head(photos_dir: Path,
                                                                                 tmp_path: Path) -> None:
    from imagerec.transfer.backbones import get_backbone

    shots = photos_dir / "few-shot"
    backbone = get_backbone("keras:MobileNetV3Small", weights=None, input_size=96)  # random weights, seed 0
    data = {"cat": [shots / "cat_train_0.bmp"], "hot dog": [shots / "hotdog_train_0.bmp", shots / "hotdog_train_1.bmp"]}
    learned = imagerec.learn(data, backbone=backbone, head="imprint", threshold=None, cache=False)
    photo = photos_dir / "hot_dog.jpg"
    assert learned.gives_gradients
    heat = learned.explain(photo)
    assert heat.method == "grad-cam" and heat.label == learned.predict(photo, top_k=1)[0].label
    other = learned.explain(photo, label="cat" if heat.label == "hot dog" else "hot dog")
    assert other.method == "grad-cam" and not np.allclose(other.map, heat.map)  # the head's classes differ
    again = imagerec.load(learned.save(tmp_path / "mine.imagerec"))
    reloaded = again.explain(photo)
    assert reloaded.method == "grad-cam" and reloaded.peak == heat.peak
    np.testing.assert_allclose(reloaded.map, heat.map, atol=1e-4 * max(1.0, float(heat.map.max())))


def test_a_recognizer_learned_on_the_int8_zoo_model_is_explained_by_occlusion(photos_dir: Path) -> None:
    learned = imagerec.load(str(LEGACY / "pets.imagerec"))
    assert not learned.gives_gradients and learned.explain(photos_dir / "hot_dog.jpg").method == "occlusion"


@pytest.mark.slow  # imports Keras and exports the model to ONNX
def test_a_keras_model_without_a_feature_map_falls_back_to_occlusion(tmp_path: Path, photos_dir: Path) -> None:
    from imagerec.core.keras_backend import import_keras
    from imagerec.formats.keras import save_model

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs))
    path = save_model(keras.Model(inputs, outputs), tmp_path / "flat.keras", classes=["a", "b"],
                      preprocessing=imagerec.Preprocessing(size=(8, 8), normalization="unit"))
    flat = imagerec.load(str(path))
    assert flat.explain(photos_dir / "hot_dog.jpg").method == "occlusion"
    with pytest.raises(UsageError, match="no convolutional feature map"):
        flat.explain(photos_dir / "hot_dog.jpg", method="grad-cam")
