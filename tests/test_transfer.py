"""imagerec.transfer: embeddings, heads, the "unknown" threshold, .imagerec files, imagerec learn."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imagerec
from imagerec.core.errors import ChecksumError, ImageDecodeError, ModelFileError, UsageError
from imagerec.transfer import add_examples, gather
from imagerec.transfer.features import EmbeddingCache, extract, variants_for
from imagerec.transfer.backbones import get_backbone

TAUGHT = ["circle", "square", "triangle"]


@pytest.fixture(scope="session")
def backbone(models_dir):
    return get_backbone("mobilenet_v2")


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """Generated shapes: 20 training and 10 held-out images per class (four classes)."""
    from imagerec.data import make_shapes

    root = make_shapes(tmp_path_factory.mktemp("shapes"), per_class=30, size=64, seed=3)
    train, held_out = {}, {}
    for shape in ["circle", "cross", "square", "triangle"]:
        files = sorted(str(p) for p in (root / shape).iterdir())
        train[shape], held_out[shape] = files[:20], files[20:]
    return train, held_out


def _accuracy(model, held_out: dict, classes) -> float:
    files = [f for c in classes for f in held_out[c]]
    truth = [c for c in classes for _ in held_out[c]]
    best = [model.labels[i] for i in model.predict_proba(files).argmax(axis=1)]
    return float(np.mean([b == t for b, t in zip(best, truth)]))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- embeddings -------------------------------------------------------------------


def test_embeddings_identical_across_runs_and_close_for_reencoded_or_rotated_copies(backbone, photos_dir, tmp_path):
    photo = photos_dir / "cat_720p.jpg"
    first = extract([str(photo)], backbone, cache=None).embeddings[0, 0]
    second = extract([str(photo)], backbone, cache=None).embeddings[0, 0]
    assert np.array_equal(first, second)

    original = Image.open(photo).convert("RGB")
    reencoded = tmp_path / "reencoded.jpg"
    original.save(reencoded, quality=80)
    # Stored sideways with an EXIF tag saying "rotate 90° clockwise to display".
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    original.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=95, exif=exif)
    copies = extract([str(reencoded), str(rotated)], backbone, cache=None).embeddings[:, 0]
    assert _cosine(first, copies[0]) > 0.99
    assert _cosine(first, copies[1]) > 0.99


def test_cache_serves_the_same_embeddings_and_only_embeds_new_files(backbone, shapes, tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    files = shapes[0]["circle"][:4]
    cold = extract(files, backbone, cache=cache)
    assert (cold.computed, cold.cached) == (4, 0)
    warm = extract(files + shapes[0]["square"][:1], backbone, cache=cache)
    assert (warm.computed, warm.cached) == (1, 4)
    assert np.array_equal(warm.embeddings[:4], cold.embeddings)
    # The same bytes under another name are the same content: a cache hit.
    copy = tmp_path / "copy.png"
    copy.write_bytes(Path(files[0]).read_bytes())
    again = extract([str(copy), Path(files[0]).read_bytes()], backbone, cache=cache)
    assert again.cached == 2 and np.array_equal(again.embeddings[0], cold.embeddings[0])


def test_augmented_variants_differ_from_the_original(backbone, photos_dir):
    result = extract([str(photos_dir / "parrot.jpg")], backbone, variants=variants_for(2), cache=None)
    original, flipped, cropped = result.embeddings[0]
    assert not np.array_equal(original, flipped) and not np.array_equal(original, cropped)
    assert _cosine(original, flipped) > 0.8


def test_undecodable_files_are_reported_not_fatal(backbone, tmp_path, shapes):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    result = extract([shapes[0]["circle"][0], str(bad), str(tmp_path / "missing.png")], backbone, cache=None)
    assert result.ok.tolist() == [True, False, False]
    assert "broken.jpg" in result.errors[1] and "missing.png" in result.errors[2]
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        extract([str(bad)], backbone, cache=None, on_error="raise")


# -- learning --------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["logistic", "imprint", "dense"])
def test_learned_recognizer_beats_chance_on_held_out_images(shapes, head):
    train, held_out = shapes
    model = imagerec.learn({c: train[c] for c in TAUGHT}, head=head, threshold=None)
    assert model.labels == TAUGHT
    assert _accuracy(model, held_out, TAUGHT) >= 0.8  # chance is 1/3


def test_save_and_load_give_identical_predictions(shapes, tmp_path):
    train, held_out = shapes
    files = [f for c in TAUGHT for f in held_out[c]] + [held_out["cross"][0]]
    for head in ("logistic", "imprint"):
        model = imagerec.learn({c: train[c] for c in TAUGHT}, head=head)
        path = model.save(tmp_path / f"{head}.imagerec")
        loaded = imagerec.load(path)
        assert loaded.labels == model.labels and loaded.threshold == model.threshold
        assert np.array_equal(loaded.predict_proba(files), model.predict_proba(files))
        assert [[p.to_dict() for p in ps] for ps in loaded.predict(files, top_k=2)] == [
            [p.to_dict() for p in ps] for ps in model.predict(files, top_k=2)
        ]
        assert loaded.metadata["backbone"]["name"] == "mobilenet_v2"


def test_unknown_threshold_rejects_an_untaught_class(shapes, photos_dir):
    train, held_out = shapes
    model = imagerec.learn({c: train[c] for c in TAUGHT}, head="imprint")
    assert model.threshold is not None
    untaught = [answer.label for answer in model.predict(held_out["cross"], top_k=1)]
    assert untaught.count("unknown") >= 0.8 * len(untaught)
    photos = [answer.label for answer in model.predict([photos_dir / "parrot.jpg", photos_dir / "hot_dog.jpg"], top_k=2)]
    assert photos == ["unknown", "unknown"]
    taught = [answer.label for c in TAUGHT for answer in model.predict(held_out[c], top_k=1)]
    truth = [c for c in TAUGHT for _ in held_out[c]]
    assert np.mean([a == b for a, b in zip(taught, truth)]) >= 0.8
    # Without the threshold the same untaught images are forced into a taught class.
    assert "unknown" not in [answer.label for answer in imagerec.learn(
        {c: train[c] for c in TAUGHT}, head="imprint", threshold=None).predict(held_out["cross"], top_k=1)]


def test_logistic_head_uses_the_class_mean_threshold_too(shapes):
    train, held_out = shapes
    model = imagerec.learn({c: train[c] for c in TAUGHT}, head="logistic")
    labels = [answer.label for answer in model.predict(held_out["cross"], top_k=1)]
    assert labels.count("unknown") >= 0.8 * len(labels)
    assert model.metadata["metrics"]["held_out_accuracy"] >= 0.8


def test_add_examples_keeps_old_classes(shapes):
    train, held_out = shapes
    for head in ("imprint", "logistic"):
        model = imagerec.learn({c: train[c] for c in TAUGHT}, head=head)
        bigger = add_examples(model, {"cross": train["cross"]})
        assert bigger.labels == [*TAUGHT, "cross"] and model.labels == TAUGHT  # the original is unchanged
        assert _accuracy(bigger, held_out, [*TAUGHT, "cross"]) >= 0.8
        crosses = [answer.label for answer in bigger.predict(held_out["cross"], top_k=1)]
        assert crosses.count("cross") >= 0.8 * len(crosses)


def test_pictures_are_learned_and_predicted_inside_the_default_grey_frame(shapes, backbone, tmp_path):
    train, held_out = shapes
    data = {c: train[c][:5] for c in TAUGHT}
    framed = imagerec.learn(data, head="imprint", threshold=None)
    plain = imagerec.learn(data, head="imprint", threshold=None, frame=0)
    assert (framed.preprocessing.frame, plain.preprocessing.frame) == (16, 0)
    # The class means are the framed pictures' embeddings: what extract gives on a framed backbone.
    expected = extract(train["circle"][:5], backbone.framed(16), cache=None).embeddings[:, 0]
    assert np.allclose(framed.head.sums_[0], (expected / np.linalg.norm(expected, axis=1, keepdims=True)).sum(0), atol=1e-4)
    files = held_out["circle"][:3]
    assert not np.allclose(framed.predict_proba(files), plain.predict_proba(files))
    # Saved and loaded, a recognizer predicts inside its own frame; --add embeds new photos in it too.
    loaded = imagerec.load(framed.save(tmp_path / "framed.imagerec"))
    assert loaded.preprocessing.frame == 16
    assert np.array_equal(loaded.predict_proba(files), framed.predict_proba(files))
    assert add_examples(loaded, {"cross": train["cross"][:3]}).preprocessing.frame == 16
    # A model-sized array is framed like the file it came from, not taken as the network's input.
    pixels = np.asarray(Image.open(files[0]).convert("RGB").resize((224, 224)))
    assert loaded.preprocess(pixels[None])[0, 0, 0].tolist() == [128] * 3


def test_a_recognizer_saved_before_frames_existed_loads_without_one(shapes, saved, tmp_path):
    def unframe(m):
        for described in (m["preprocessing"], m["backbone"]["preprocessing"]):
            described.pop("frame", None)

    old = imagerec.load(_rewrite(saved, tmp_path / "old.imagerec", unframe))
    assert old.preprocessing.frame == 0 and imagerec.load(saved).preprocessing.frame == 16

    def impossible(m):
        m["preprocessing"]["frame"] = 999

    with pytest.raises(ModelFileError, match="preprocessing is invalid.*frame must be between"):
        imagerec.load(_rewrite(saved, tmp_path / "bad-frame.imagerec", impossible))


def test_one_photo_per_class_from_bytes(photos_dir):
    """The web UI's "teach" panel passes uploaded bytes."""
    shots = photos_dir / "few-shot"
    model = imagerec.learn(
        {"cat": [(shots / "cat_train_0.bmp").read_bytes()], "hot dog": [(shots / "hotdog_train_0.bmp").read_bytes()]},
        head="imprint",
    )
    assert model.predict(photos_dir / "cat_720p.jpg", top_k=1)[0].label == "cat"
    assert model.predict(photos_dir / "hot_dog.jpg", top_k=1)[0].label == "hot dog"


def test_bad_learning_input_is_refused_clearly(tmp_path, shapes):
    with pytest.raises(UsageError, match="reserved"):
        imagerec.learn({"unknown": shapes[0]["circle"][:2], "square": shapes[0]["square"][:2]})
    with pytest.raises(UsageError, match="sub-folder"):
        imagerec.learn(tmp_path)
    with pytest.raises(UsageError, match="unknown head"):
        imagerec.learn({"a": shapes[0]["circle"][:2], "b": shapes[0]["square"][:2]}, head="forest")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(UsageError, match="no readable image left for class.*'b'"):
        imagerec.learn({"a": shapes[0]["circle"][:2], "b": [str(bad)]}, head="imprint")
    model = imagerec.learn({"a": shapes[0]["circle"][:2], "b": [*shapes[0]["square"][:2], str(bad)]}, head="imprint")
    assert list(model.metadata["training"]["skipped"]) == [str(bad)]
    with pytest.raises(UsageError, match="pretrained model"):
        imagerec.load("mobilenet_v2").save(tmp_path / "x.imagerec")


def test_gather_reads_class_folders(shapes, tmp_path):
    for shape in TAUGHT:
        (tmp_path / shape).mkdir()
        for f in shapes[0][shape][:2]:
            (tmp_path / shape / Path(f).name).write_bytes(Path(f).read_bytes())
    sources, labels, classes = gather(tmp_path)
    assert classes == TAUGHT and labels.count("square") == 2 and len(sources) == 6


# -- the .imagerec file ----------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(shapes, tmp_path_factory) -> Path:
    train, _ = shapes
    model = imagerec.learn({c: train[c][:5] for c in TAUGHT}, head="imprint")
    return model.save(tmp_path_factory.mktemp("saved") / "shapes.imagerec")


def _rewrite(src: Path, dest: Path, edit_manifest=None, recompute_checksum=True, edit_member=None) -> Path:
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if edit_manifest is not None:
        manifest = json.loads(members["manifest.json"])
        edit_manifest(manifest)
        members["manifest.json"] = json.dumps(manifest).encode()
        if recompute_checksum:
            members["manifest.sha256"] = hashlib.sha256(members["manifest.json"]).hexdigest().encode()
    if edit_member is not None:
        edit_member(members)
    with zipfile.ZipFile(dest, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dest


def test_file_holds_a_manifest_and_plain_arrays(saved):
    with zipfile.ZipFile(saved) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        assert {"manifest.json", "manifest.sha256", "arrays/sums.npy", "arrays/counts.npy"} <= names
        for entry in manifest["arrays"].values():
            np.load(io.BytesIO(archive.read(entry["file"])), allow_pickle=False)
    assert manifest["format_version"] == 1 and manifest["labels"] == TAUGHT
    assert manifest["backbone"]["sha256"] == imagerec.load("mobilenet_v2").sha256
    assert set(manifest) >= {"created", "preprocessing", "threshold", "metrics", "head"}


def test_wrong_backbone_checksum_is_refused(saved, tmp_path):
    def edit(m):
        m["backbone"]["sha256"] = "0" * 64

    path = _rewrite(saved, tmp_path / "wrong.imagerec", edit)
    with pytest.raises(ChecksumError, match="learned on backbone 'mobilenet_v2'.*learn the recognizer again"):
        imagerec.load(path)


def test_newer_format_version_is_refused(saved, tmp_path):
    def edit(m):
        m["format_version"] = 99

    path = _rewrite(saved, tmp_path / "newer.imagerec", edit)
    with pytest.raises(ModelFileError, match="newer imagerec.*upgrade imagerec"):
        imagerec.load(path)


def test_tampered_manifest_or_arrays_are_refused(saved, tmp_path):
    def relabel(m):
        m["labels"] = ["circle", "square", "hexagon"]

    path = _rewrite(saved, tmp_path / "tampered.imagerec", relabel, recompute_checksum=False)
    with pytest.raises(ChecksumError, match="manifest.json was modified"):
        imagerec.load(path)

    def swap_array(members):
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((3, 1280)))
        members["arrays/sums.npy"] = buffer.getvalue()

    path = _rewrite(saved, tmp_path / "arrays.imagerec", edit_member=swap_array)
    with pytest.raises(ChecksumError, match="arrays/sums.npy does not match"):
        imagerec.load(path)

    junk = tmp_path / "junk.imagerec"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="not a learned recognizer"):
        imagerec.load(junk)

    truncated = tmp_path / "truncated.imagerec"
    truncated.write_bytes(saved.read_bytes()[:-200])
    with pytest.raises(ModelFileError):
        imagerec.load(truncated)


def _edit_array(saved: Path, dest: Path, blob: bytes, **entry) -> Path:
    """A copy of ``saved`` whose arrays/sums.npy is ``blob``, with a manifest that agrees (checksums recomputed)."""

    def manifest(m):
        m["arrays"]["sums"].update(sha256=hashlib.sha256(blob).hexdigest(), **entry)

    def member(members):
        members["arrays/sums.npy"] = blob

    return _rewrite(saved, dest, manifest, edit_member=member)


def test_a_hostile_file_is_refused_before_it_takes_memory(saved, tmp_path):
    # An .npy header announcing an 8 TB array over a few bytes of data.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    huge = _edit_array(saved, tmp_path / "huge.imagerec", header.getvalue() + b"\0" * 64,
                       shape=[10**6, 10**6], dtype="float64")
    with pytest.raises(ModelFileError, match="its arrays would take .* bytes of memory, over the .* limit"):
        imagerec.load(huge)

    # A header that disagrees with the manifest, and pickled objects.
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 7)))
    with pytest.raises(ModelFileError, match="cannot hold the array the manifest describes"):
        imagerec.load(_edit_array(saved, tmp_path / "other.imagerec", buffer.getvalue()))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="its manifest is invalid: arrays.sums.dtype"):
        imagerec.load(_edit_array(saved, tmp_path / "pickle.imagerec", buffer.getvalue(), dtype="object"))

    # Two arrays read from one member (which could multiply a large member's memory).
    def twice(m):
        m["arrays"]["counts"]["file"] = m["arrays"]["sums"]["file"]

    with pytest.raises(ModelFileError, match="names one array file for two arrays"):
        imagerec.load(_rewrite(saved, tmp_path / "twice.imagerec", twice))

    # A zip whose directory claims its members unpack to 2 × 3.75 GiB.
    data = bytearray(saved.read_bytes())
    start = 0
    for _ in range(2):
        start = data.index(b"PK\x01\x02", start) + 4  # a central directory entry; the size is at +24
        data[start + 20 : start + 24] = (0xF0000000).to_bytes(4, "little")
    bomb = tmp_path / "bomb.imagerec"
    bomb.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="unpacks to .* bytes, over the .* limit"):
        imagerec.load(bomb)


def test_a_manifest_of_the_wrong_shape_is_refused(saved, tmp_path):
    for key, value in (("labels", "circle"), ("head", ["imprint"]), ("arrays", None), ("backbone", "mobilenet_v2")):
        path = _rewrite(saved, tmp_path / f"{key}.imagerec", lambda m: m.update({key: value}))
        with pytest.raises(ModelFileError, match=f"its manifest is invalid: {key}: "):
            imagerec.load(path)

    def no_sha(m):
        del m["backbone"]["sha256"]

    with pytest.raises(ModelFileError, match="its manifest is invalid: backbone.sha256: Field required"):
        imagerec.load(_rewrite(saved, tmp_path / "no-sha.imagerec", no_sha))

    def future_kind(m):
        m["backbone"]["kind"] = "quantum"

    with pytest.raises(ModelFileError, match="backbone kind 'quantum' is not one of zoo, pooled, keras"):
        imagerec.load(_rewrite(saved, tmp_path / "kind.imagerec", future_kind))


def test_a_file_from_before_backbone_kinds_loads_as_a_zoo_backbone(saved, tmp_path, photos_dir):
    def first_version(m):
        for key in ("kind", "options"):
            m["backbone"].pop(key, None)

    old = imagerec.load(_rewrite(saved, tmp_path / "first.imagerec", first_version))
    photo = photos_dir / "parrot.jpg"
    np.testing.assert_array_equal(old.predict_proba(photo), imagerec.load(saved).predict_proba(photo))


# -- the command line ------------------------------------------------------------------


def test_cli_learn_predict_and_add(shapes, tmp_path, capsys):
    from imagerec.cli._app import run_app

    train, held_out = shapes
    data = tmp_path / "data"
    extra = tmp_path / "extra"
    for folder, classes in ((data, TAUGHT), (extra, ["cross"])):
        for c in classes:
            (folder / c).mkdir(parents=True)
            for f in train[c][:8]:
                (folder / c / Path(f).name).write_bytes(Path(f).read_bytes())
    model = tmp_path / "shapes.imagerec"
    assert run_app(["learn", str(data), "--head", "imprint", "--threshold", "none", "--output", str(model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == {c: 8 for c in TAUGHT} and summary["path"] == str(model)
    assert summary["threshold"] is None

    assert run_app(["predict", "--model", str(model), "--json", "-k", "1", held_out["square"][0]]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["predictions"][0]["label"] == "square"

    assert run_app(["learn", "--add", str(extra), "--to", str(model), "--json"]) == 0
    capsys.readouterr()
    assert imagerec.load(model).labels == [*TAUGHT, "cross"]
    assert run_app(["predict", "--model", str(model), "--json", "-k", "1", held_out["cross"][0], held_out["circle"][0]]) == 0
    labels = [json.loads(row)["predictions"][0]["label"] for row in capsys.readouterr().out.splitlines()]
    assert labels == ["cross", "circle"]

    assert run_app(["learn", "--add", str(extra)]) == 2
    assert "--add DATA and --to" in capsys.readouterr().err
    assert run_app(["learn", "--add", str(extra), "--to", str(model), "--frame", "0"]) == 2
    assert "--add keeps the recognizer's own" in capsys.readouterr().err

    plain = tmp_path / "plain.imagerec"
    assert run_app(["learn", str(data), "--head", "imprint", "--frame", "0", "-o", str(plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frame"] == 0 and imagerec.load(plain).preprocessing.frame == 0


def test_an_interrupted_save_keeps_the_previous_file(saved, tmp_path, monkeypatch):
    target = tmp_path / "keep.imagerec"
    target.write_bytes(saved.read_bytes())
    model = imagerec.load(target)
    original = zipfile.ZipFile.writestr

    def failing(self, name, data, *args, **kwargs):
        if str(getattr(name, "filename", name)).startswith("arrays/"):
            raise OSError("disk full")
        return original(self, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(ModelFileError, match="cannot save the learned recognizer.*disk full.*unchanged"):
        model.save(target)
    monkeypatch.undo()
    assert target.read_bytes() == saved.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.imagerec"]  # no half-written temporary file
    assert imagerec.load(target).labels == TAUGHT


def test_more_examples_of_a_known_class_and_a_loaded_backbone(shapes, recognizer):
    train, held_out = shapes
    # A loaded zoo recognizer serves as the backbone (a server reuses its model).
    model = imagerec.learn({c: train[c][:3] for c in TAUGHT}, backbone=recognizer, head="imprint")
    assert model.metadata["backbone"]["sha256"] == recognizer.sha256
    more = add_examples(model, {"circle": train["circle"][3:10]})
    assert more.labels == TAUGHT
    assert more.head.counts_.tolist() == [10, 3, 3]
    assert more.metadata["training"]["examples"] == {"circle": 10, "square": 3, "triangle": 3}


def test_a_single_wrapper_folder_is_descended_like_train_does(tmp_path):
    from imagerec.data import make_shapes

    make_shapes(tmp_path / "wrap" / "train", per_class=2, size=16, classes=("circle", "square"))
    sources, labels, classes = gather(tmp_path / "wrap")
    assert classes == ["circle", "square"] and labels == ["circle", "circle", "square", "square"]
    assert all(Path(s).parent.parent.name == "train" for s in sources)


def test_an_empty_class_folder_is_the_same_error_train_gives(tmp_path):
    from imagerec.cli import run_app
    from imagerec.data import make_shapes
    from imagerec.core.errors import DatasetError

    root = make_shapes(tmp_path / "s", per_class=2, size=16, classes=("circle", "square"))
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="class folder 'empty' has no images"):
        imagerec.learn(root, head="imprint")
    assert run_app(["learn", str(root), "--head", "imprint", "-o", str(tmp_path / "x.imagerec")]) == 1
    assert not (tmp_path / "x.imagerec").exists()


# -- class weights ----------------------------------------------------------------------


def test_class_weight_reaches_the_head_and_the_saved_file(shapes, tmp_path, capsys):
    from imagerec.cli._app import run_app

    train, _ = shapes
    data = tmp_path / "data"
    for c, count in (("circle", 12), ("square", 12), ("triangle", 3)):  # the photos people have: uneven
        (data / c).mkdir(parents=True)
        for f in train[c][:count]:
            (data / c / Path(f).name).write_bytes(Path(f).read_bytes())
    default = imagerec.learn(data, threshold=None)
    assert default.head.params()["class_weight"] == "balanced"  # the documented default
    model = tmp_path / "none.imagerec"
    assert run_app(["learn", str(data), "--class-weight", "none", "--threshold", "none", "-o", str(model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == {"circle": 12, "square": 12, "triangle": 3} and summary["class_weight"] == "none"
    assert imagerec.load(model).head.params()["class_weight"] == "none"

    assert run_app(["learn", str(data), "--threshold", "none", "-o", str(model)]) == 0
    table = capsys.readouterr().out
    assert "class weight: balanced" in table and "triangle" in table

    assert run_app(["learn", str(data), "--class-weight", "equal", "-o", str(model)]) == 2
    assert capsys.readouterr().err.strip().endswith("class weight must be 'balanced' or 'none', got 'equal'")
    assert run_app(["learn", str(data), "--head", "imprint", "--class-weight", "none", "-o", str(model)]) == 2
    assert "class weights apply to the logistic and dense heads" in capsys.readouterr().err
    assert run_app(["learn", "--add", str(data), "--to", str(model), "--class-weight", "none"]) == 2
    assert "--add keeps the recognizer's own" in capsys.readouterr().err
    with pytest.raises(UsageError, match="class weight must be"):
        imagerec.learn(data, head_options={"class_weight": "equal"})
