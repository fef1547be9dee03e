"""The hostile-input corpus of issue 20: small generators of hostile files.

Each generator writes (or returns) one attack in a few kilobytes; the attack
is only large once a victim decodes, extracts or parses it. ``tests/test_hostile.py``
and ``tests/test_hostile_server.py`` replay every case; ``HELD`` lists the
attacks that already held before issue 20 and the existing tests that replay them.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

# Attacks that held before issue 20, and the tests (file::name) that replay them.
HELD = {
    "API key variants (header, Google header, query), wrong keys, none in the log":
        ["test_serving.py::test_api_keys_are_enforced", "test_serving_server.py::test_keys_are_enforced_and_never_logged"],
    "oversized bodies, declared or streamed": ["test_serving.py::test_request_body_over_the_limit_is_413_declared_or_streamed"],
    "upload bytes held at once": ["test_serving.py::test_uploads_held_at_once_are_bounded"],
    "decompression-bomb image headers": ["test_images.py::test_bomb_is_refused_before_decoding", "test_serving.py::test_too_many_pixels_is_400"],
    "malformed JSON and bad base64": ["test_serving.py::test_malformed_json", "test_serving.py::test_bad_base64"],
    "deep and huge JSON": ["test_hostile.py::test_deep_and_huge_json_is_a_400"],
    "SSRF through imageUri": ["test_hostile.py::test_image_uris_are_never_fetched"],
    "path traversal in model names": ["test_hostile.py::test_model_names_cannot_reach_files"],
    "zip-slip, pickles and memory bombs in .imagerec files":
        ["test_transfer.py::test_a_hostile_file_is_refused_before_it_takes_memory", "test_transfer.py::test_tampered_manifest_or_arrays_are_refused"],
    ".keras safe mode against code in the file": ["test_training.py::test_safe_mode_refuses_a_model_that_carries_code"],
    "garbage .onnx / .tflite files": ["test_onnx_backend.py::test_bad_inputs_and_files", "test_litert.py::test_bad_model_files"],
    "kill -9 during indexing": ["test_library_robustness.py::test_sigkill_mid_index_then_rerun_gives_the_complete_catalog"],
    "symlink loops in a library": ["test_library.py::test_walker_skips_hidden_and_system_folders_and_survives_link_loops"],
    "labels with HTML in reports": ["test_cloud_compare.py::test_report_escapes_labels_and_shows_everything"],
    "tar slip in training archives": ["test_data.py::test_hostile_archive_cannot_write_outside"],
}


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def float_tiff(side: int = 7000) -> bytes:
    """~300 KB that decode to side² float32 pixels (1.5 GB on /v1/predict before issue 20)."""
    return encode(Image.fromarray(np.zeros((side, side), np.float32), "F"), "TIFF", compression="tiff_adobe_deflate")


def png16(side: int = 7000) -> bytes:
    return encode(Image.fromarray(np.full((side, side), 40000, np.uint16)), "PNG")


def rgba_png(side: int = 7000) -> bytes:
    return encode(Image.new("RGBA", (side, side), (10, 20, 30, 128)), "PNG")


def ztxt_bomb(megabytes: int = 64) -> bytes:
    """A tiny PNG whose zTXt chunk inflates to ``megabytes`` MB of text."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (megabytes * 1024 * 1024), zip=True)
    return encode(Image.new("RGB", (8, 8)), "PNG", pnginfo=info)


def tar_bomb(path: Path, members: int = 4, member_bytes: int = 512 * 1024 * 1024) -> Path:
    """Class folders whose files are ``member_bytes`` of zeros: megabytes that extract to gigabytes."""

    class Zeros:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, size: int = -1) -> bytes:
            count = self.left if size < 0 else min(size, self.left)
            self.left -= count
            return bytes(count)

    with tarfile.open(path, "w:gz") as tar:
        for index in range(members):
            member = tarfile.TarInfo(f"data/{'ab'[index % 2]}/zeros{index}.jpg")
            member.size = member_bytes
            tar.addfile(member, Zeros(member_bytes))
    return path


def many_members(path: Path, count: int) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for index in range(count):
            member = tarfile.TarInfo(f"data/{'ab'[index % 2]}/{index}.jpg")
            member.size = 0
            tar.addfile(member, io.BytesIO())
    return path


def rewrite_imagerec(source: Path, dest: Path, change, members: dict[str, bytes] | None = None) -> Path:
    """A copy of a ``.imagerec`` file whose manifest ``change`` edits, with the checksum recomputed.

    ``change`` takes the manifest dict and returns a dict or the raw bytes to
    store; ``members`` adds or replaces other members. This is what a hostile
    author can do, since the checksum is not a signature.
    """
    import hashlib
    import json
    import zipfile

    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    edited = change(json.loads(contents["manifest.json"]))
    raw = edited if isinstance(edited, bytes) else json.dumps(edited).encode()
    contents["manifest.json"] = raw
    contents["manifest.sha256"] = (hashlib.sha256(raw).hexdigest() + "\n").encode()
    contents.update(members or {})
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return dest


LEGACY = Path(__file__).parent.parent / "fixtures" / "legacy"

# Malformed manifests of a .imagerec file (item 6): each must be one line of ModelFileError.
MANIFEST_CASES = {
    "arrays-list": lambda m: {**m, "arrays": []},
    "arrays-empty": lambda m: {**m, "arrays": {}},
    "head-string": lambda m: {**m, "head": "x"},
    "labels-null": lambda m: {**m, "labels": None},
    "labels-string": lambda m: {**m, "labels": "abcd"},
    "threshold-string": lambda m: {**m, "threshold": "abc"},
    "threshold-nan": lambda m: json_bytes({**m, "threshold": float("nan")}),
    "deep": lambda m: ("[" * 100_000 + "]" * 100_000).encode(),
    "digits": lambda m: json_bytes({**m, "threshold": 0}).replace(b'"threshold": 0', b'"threshold": ' + b"9" * 5000),
    "size-string": lambda m: {**m, "preprocessing": {**m["preprocessing"], "size": "ab"}},
    "params-string": lambda m: {**m, "head": {"type": "imprint", "params": "zz"}},
    "array-traversal": lambda m: {**m, "arrays": {**m["arrays"], "sums": {**m["arrays"]["sums"], "file": "../../etc/passwd"}}},
    "not-json": lambda m: b"\xff\xfe not json",
}

# Malformed imagerec metadata of an exported .onnx / .tflite, or imagerec.json of a .keras file.
EXPORTED_CASES = {
    "threshold-string": lambda i: {**i, "threshold": "abc"},
    "labels-string": lambda i: {**i, "labels": "abcd"},
    "labels-null": lambda i: {**i, "labels": None},
    "size-string": lambda i: {**i, "preprocessing": {**i["preprocessing"], "size": "ab"}},
    "deep": lambda i: "[" * 100_000 + "]" * 100_000,
}
KERAS_CASES = {
    "size-string": lambda i: {**i, "preprocessing": {**i["preprocessing"], "size": "ab"}},
    "classes-string": lambda i: {**i, "classes": "abcd"},
    "shift-string": lambda i: {**i, "shift_average": "2"},
    "deep": lambda i: "[" * 100_000 + "]" * 100_000,
}


def json_bytes(document) -> bytes:
    import json

    return json.dumps(document).encode()


def rewrite_onnx_metadata(source: Path, dest: Path, change) -> Path:
    import json

    import onnx

    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "imagerec":
            edited = change(json.loads(prop.value))
            prop.value = edited if isinstance(edited, str) else json.dumps(edited)
    onnx.save(model, str(dest))
    return dest


def rewrite_tflite_metadata(source: Path, dest: Path, change) -> Path:
    import json

    from imagerec.backends.litert import read_metadata, with_metadata

    data = source.read_bytes()
    edited = change(json.loads(read_metadata(data)["imagerec"]))
    text = edited if isinstance(edited, str) else json.dumps(edited)
    dest.write_bytes(with_metadata(data, "imagerec", text.encode()))
    return dest


def rewrite_keras_metadata(source: Path, dest: Path, change) -> Path:
    import json
    import zipfile

    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    edited = change(json.loads(contents["imagerec.json"]))
    contents["imagerec.json"] = (edited if isinstance(edited, str) else json.dumps(edited)).encode()
    with zipfile.ZipFile(dest, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return dest


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def with_array(source: Path, dest: Path, name: str, array: np.ndarray) -> Path:
    """``source`` with its array ``name`` replaced and the manifest updated to match (checksums and all)."""
    import hashlib

    blob = npy(array)

    def change(manifest):
        entry = manifest["arrays"][name]
        entry.update(sha256=hashlib.sha256(blob).hexdigest(), shape=list(array.shape), dtype=str(array.dtype))
        return manifest

    with __import__("zipfile").ZipFile(source) as archive:
        file = __import__("json").loads(archive.read("manifest.json"))["arrays"][name]["file"]
    return rewrite_imagerec(source, dest, change, {file: blob})


def many_names_one_member(source: Path, dest: Path, names: int = 10) -> Path:
    """A zip whose directory lists one member's bytes under ``names`` names (item 5's 200 MB × 10)."""
    import hashlib
    import zipfile

    blob = npy(np.zeros((4, 1280)))
    entries = {f"a{index}": f"arrays/a{index}.npy" for index in range(names)}

    def change(manifest):
        digest = hashlib.sha256(blob).hexdigest()
        manifest["arrays"] = {key: {"file": file, "sha256": digest, "shape": [4, 1280], "dtype": "float64"}
                              for key, file in entries.items()}
        return manifest

    rewrite_imagerec(source, dest, change, {file: blob for file in entries.values()})
    data = bytearray(dest.read_bytes())
    with zipfile.ZipFile(dest) as archive:
        first = archive.getinfo(entries["a0"]).header_offset
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:  # central directory entries; offset at +42
        name_length = int.from_bytes(data[start + 28:start + 30], "little")
        if data[start + 46:start + 46 + name_length].decode().startswith("arrays/a"):
            data[start + 42:start + 46] = first.to_bytes(4, "little")
        start += 4
    dest.write_bytes(bytes(data))
    return dest


# -- the teaching routes (issue 22) ----------------------------------------------------
# Each case is replayed by tests/test_serving_teach.py (and the examples cases by
# tests/test_transfer_examples.py): a one-line 4xx, nothing changed, the server unharmed.


def zip_of(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _manifest_upload(case: str):
    def make(folder: Path) -> tuple[str, bytes]:
        path = rewrite_imagerec(LEGACY / "pets.imagerec", folder / f"{case}.imagerec", MANIFEST_CASES[case])
        return path.name, path.read_bytes()

    return make


# Files sent to POST /v1/teach/{model}/open: (file name, bytes) made in a scratch folder.
OPEN_UPLOAD_CASES = {
    "text-file": lambda folder: ("notes.txt", b"not a model"),
    "model-named-txt": lambda folder: ("pets.txt", (LEGACY / "pets.imagerec").read_bytes()),
    "jpeg-named-imagerec": lambda folder: ("photo.imagerec", encode(Image.new("RGB", (8, 8)), "JPEG")),
    "zip-of-nothing": lambda folder: ("empty.imagerec", zip_of({"readme.txt": b"hello"})),
    "truncated": lambda folder: ("cut.imagerec", (LEGACY / "pets.imagerec").read_bytes()[:600]),
    "name-traversal": lambda folder: ("../../etc/passwd", b"root:x:0:0"),
    **{f"manifest-{case}": _manifest_upload(case) for case in MANIFEST_CASES},
}


def _examples(listing, embeddings: bytes) -> dict[str, bytes]:
    import json

    raw = listing if isinstance(listing, bytes) else json.dumps(listing).encode()
    return {"taught/examples.json": raw, "taught/embeddings.npy": embeddings}


_JPEG = __import__("base64").b64encode(encode(Image.new("RGB", (4, 4)), "JPEG")).decode()
_ONE = [{"id": "a1", "label": "cat", "thumbnail": _JPEG}]


def _pickled_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


# Kept examples inside a .imagerec file gone wrong (members added to pets.imagerec, 1280-d).
EXAMPLES_CASES = {
    "listing-deep": _examples(b"[" * 100_000 + b"]" * 100_000, npy(np.zeros((0, 1280), np.float32))),
    "listing-not-json": _examples(b"\xff\xfe", npy(np.zeros((0, 1280), np.float32))),
    "listing-not-a-list": _examples({"id": "a1"}, npy(np.zeros((1, 1280), np.float32))),
    "embeddings-wrong-shape": _examples(_ONE, npy(np.zeros((1, 7), np.float32))),
    "embeddings-fewer-rows": _examples(_ONE * 2, npy(np.zeros((1, 1280), np.float32))),
    "embeddings-nan": _examples(_ONE, npy(np.full((1, 1280), np.nan, np.float32))),
    "embeddings-pickled": _examples(_ONE, _pickled_npy()),
    "embeddings-not-npy": _examples(_ONE, b"\x93NUMPY garbage"),
    "id-traversal": _examples([{**_ONE[0], "id": "../../x"}], npy(np.zeros((1, 1280), np.float32))),
    "id-repeated": _examples(_ONE * 2, npy(np.zeros((2, 1280), np.float32))),
    "thumbnail-not-jpeg": _examples([{**_ONE[0], "thumbnail": "PHNjcmlwdD4="}], npy(np.zeros((1, 1280), np.float32))),
    "thumbnail-not-base64": _examples([{**_ONE[0], "thumbnail": "%%%"}], npy(np.zeros((1, 1280), np.float32))),
    "entry-not-object": _examples([7], npy(np.zeros((1, 1280), np.float32))),
}


def with_members(source: Path, dest: Path, members: dict[str, bytes]) -> Path:
    """A copy of the zip ``source`` with ``members`` added (or replaced): what :data:`EXAMPLES_CASES` apply."""
    import zipfile

    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    dest.write_bytes(zip_of({**contents, **members}))
    return dest


# Requests to the teaching routes that must be refused in one line (method, path, keyword arguments).
TEACH_REQUEST_CASES = {
    "rename-deep-json": ("PATCH", "/v1/teach/taught/classes/cat", {"content": b"[" * 50_000 + b"]" * 50_000}),
    "rename-huge-body": ("PATCH", "/v1/teach/taught/classes/cat", {"content": b'{"label": "' + b"x" * 100_000 + b'"}'}),
    "rename-not-json": ("PATCH", "/v1/teach/taught/classes/cat", {"content": b"\xff"}),
    "rename-label-number": ("PATCH", "/v1/teach/taught/classes/cat", {"json": {"label": 7}}),
    "rename-label-empty": ("PATCH", "/v1/teach/taught/classes/cat", {"json": {"label": "   "}}),
    "rename-label-too-long": ("PATCH", "/v1/teach/taught/classes/cat", {"json": {"label": "x" * 101}}),
    "rename-label-unknown": ("PATCH", "/v1/teach/taught/classes/cat", {"json": {"label": "unknown"}}),
    "rename-onto-existing": ("PATCH", "/v1/teach/taught/classes/cat", {"json": {"label": "dog"}}),
    "unknown-example": ("DELETE", "/v1/teach/taught/examples/nope", {}),
    "example-id-traversal": ("DELETE", "/v1/teach/taught/examples/..%2F..%2Fetc", {}),
    "unknown-class": ("DELETE", "/v1/teach/taught/classes/owl", {}),
    "unknown-model": ("GET", "/v1/teach/nothing-here", {}),
    "model-name-traversal": ("POST", "/v1/teach/..%2F..%2Fetc/keep", {}),
    "open-two-files": ("POST", "/v1/teach/other/open",
                       {"files": [("a", ("a.imagerec", b"x")), ("b", ("b.imagerec", b"y"))]}),
    "open-no-file": ("POST", "/v1/teach/other/open", {"data": {"x": "y"}, "files": [("z", ("", b""))]}),
}
