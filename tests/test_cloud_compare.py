"""Agreement, latency, cost, the HTML report and ``imagerec compare`` (against the fakes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes.cloud import AWS_ACCESS_KEY, AWS_SECRET_KEY, AZURE_KEY, GOOGLE_KEY, FakeCloud
from imagerec.cli import run_app
from imagerec.cloud import pricing
from imagerec.cloud.base import Provider
from imagerec.cloud.compare import compare, concept_keys, labels_match, normalise, pair_agreement
from imagerec.cloud.local import LocalProvider
from imagerec.cloud.report import render_html
from imagerec.core.errors import CloudError, UsageError
from imagerec.recognizer import Prediction
from test_cloud import configure

SECRETS = (GOOGLE_KEY, AZURE_KEY, AWS_ACCESS_KEY, AWS_SECRET_KEY)


class Scripted(Provider):
    """A provider answering from a dict: photo name -> labels (or an error)."""

    def __init__(self, name: str, answers: dict[str, list[str] | CloudError], batch: int = 1) -> None:
        super().__init__()
        self.name = name
        self.answers = answers
        self.max_batch = batch

    def _annotate(self, uploads, top_k):
        out = []
        for upload in uploads:
            answer = self.answers[Path(upload.name).name]
            if isinstance(answer, CloudError):
                out.append(answer)
            else:
                out.append([Prediction(label, 1.0 - i / 10, -1) for i, label in enumerate(answer)])
        return out


# -- normalisation and agreement ----------------------------------------------


def test_normalise_case_spacing_and_plurals():
    assert normalise("Parking Lots") == "parking lot"
    assert normalise("PUPPIES") == "puppy" and normalise("Boxes") == "box" and normalise("Grass") == "grass"
    assert normalise("hot-dog") == "hot dog"


@pytest.mark.parametrize("a,b,same", [
    ("Cat", "cat", True), ("Cats", "cat", True), ("Egyptian cat", "Cat", True), ("Felidae", "cat", True),
    ("Hot dog", "hotdog", True), ("hotdog", "Dog", False), ("Automobile", "Car", True), ("People", "Person", True),
    ("macaw", "Parrot", True), ("Street", "Street sign", False), ("Cat", "Dog", False),
])
def test_labels_match(a, b, same):
    assert labels_match(a, b) is same


@pytest.mark.parametrize("local,cloud", [
    ("golden retriever", "Dog"), ("macaw", "Bird"), ("daisy", "Flower"), ("pizza", "Food"),
    ("golden retriever", "Mammal"), ("tabby", "Cat"), ("sports car", "Vehicle"), ("daisy", "Plant"),
    ("Cat", "Mammal"),  # between two services too: one is a kind of the other
])
def test_a_local_label_meets_its_cloud_synonym_or_wordnet_ancestor(local, cloud):
    assert labels_match(local, cloud) and labels_match(cloud, local)


@pytest.mark.parametrize("a,b", [
    ("golden retriever", "Cat"), ("tabby", "Dog"), ("macaw", "Flower"), ("pizza", "Bird"), ("Mammal", "Bird"),
    ("daisy", "Organ"),  # siblings and strangers do not meet through shared ancestors
])
def test_labels_do_not_meet_through_shared_ancestors(a, b):
    assert not labels_match(a, b)


def test_agreement_uses_the_hierarchy(tmp_path):
    local = Scripted("local", {"a.jpg": ["golden retriever", "tennis ball"], "b.jpg": ["macaw"], "c.jpg": ["pizza"]})
    google = Scripted("google", {"a.jpg": ["Dog", "Grass"], "b.jpg": ["Bird"], "c.jpg": ["Food"]}, batch=16)
    [pair] = compare(_photos(tmp_path), [local, google], top_k=2).agreement
    assert pair.per_photo == [pytest.approx(0.5), 1.0, 1.0] and pair.photos_with_shared_label == 3


def test_provider_aliases_count_as_the_same_label():
    assert not labels_match("Pet", "Companion animal")
    assert labels_match("Pet", "Companion animal", aliases_a=["companion animal"])
    assert concept_keys("tabby", ["tabby cat"]) >= {"tabby", "cat"}


def test_pair_agreement_is_symmetric():
    a = [concept_keys(x) for x in ("Cat", "Mammal", "Whiskers", "Pet")]
    b = [concept_keys(x) for x in ("cat", "pet")]
    assert pair_agreement(a, b) == pair_agreement(b, a) == ((2 / 4 + 2 / 2) / 2, 2)
    assert pair_agreement(a, []) == (0.0, 0)


def test_compare_agreement_latency_cost_and_errors(tmp_path):
    rejected = CloudError("aws", "the service rejected the image (InvalidImageFormatException)", kind="invalid_image")
    google = Scripted("google", {"a.jpg": ["Cat", "Whiskers"], "b.jpg": ["Dog", "Snout"], "c.jpg": ["Tree"]}, batch=16)
    aws = Scripted("aws", {"a.jpg": ["Cat", "Pet"], "b.jpg": ["Canine"], "c.jpg": rejected})
    result = compare(_photos(tmp_path), [google, aws], top_k=2)
    summary = result.summaries
    assert summary["google"].ok == 3 and summary["google"].requests == 1  # one batched request
    assert summary["aws"].ok == 2 and summary["aws"].errors == 1 and summary["aws"].requests == 3
    assert summary["aws"].first_error.startswith("aws: the service rejected")
    assert summary["google"].estimated_usd == pytest.approx(3 * pricing.PRICES["google"].usd_per_1000 / 1000)
    assert summary["google"].median_seconds_per_image > 0
    [pair] = result.agreement
    assert pair.photos == 2 and pair.per_photo == [pytest.approx(0.5), pytest.approx(0.75), None]
    assert pair.photos_with_shared_label == 2
    data = json.loads(json.dumps(result.to_dict()))
    assert data["prices_taken"] == pricing.PRICES_TAKEN and data["photos"][2]["providers"]["aws"]["error"]
    assert result.failed == 1


def _photos(folder: Path) -> list[str]:
    """Three small photos named a.jpg, b.jpg, c.jpg (the Scripted providers answer by name)."""
    from PIL import Image

    paths = []
    for i, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        Image.new("RGB", (64, 64), (40 * i, 10, 10)).save(folder / name)
        paths.append(str(folder / name))
    return paths


def test_compare_refuses_bad_arguments():
    google = Scripted("google", {})
    with pytest.raises(UsageError):
        compare([], [google])
    with pytest.raises(UsageError, match="once"):
        compare(["x.jpg"], [google, Scripted("google", {})])


def test_local_provider_labels_real_photos(recognizer, photos_dir):
    local = LocalProvider(recognizer)
    results = local.label_files([photos_dir / "parrot.jpg", photos_dir / "missing.jpg"], top_k=3)
    assert results[0].predictions[0].label == "macaw" and results[0].seconds > 0
    assert "no such file" in str(results[1].error)


def test_price_table_is_in_one_place_with_its_date():
    assert set(pricing.PRICES) == {"local", "google", "aws", "azure"}
    assert pricing.PRICES_TAKEN.count("-") == 2
    assert all(p.source.startswith("https://") for name, p in pricing.PRICES.items() if name != "local")
    assert pricing.estimate("google", 2000) == pytest.approx(3.0)
    with pytest.raises(UsageError):
        pricing.cost_per_1000("ibm")


def test_report_escapes_labels_and_shows_everything(tmp_path):
    evil = "<script>alert(1)</script>"
    google = Scripted("google", {"a.jpg": [evil, "Cat"], "b.jpg": ["Dog"], "c.jpg": ["Tree"]})
    azure = Scripted("azure", {"a.jpg": ["cat"], "b.jpg": CloudError("azure", "the service rejected <b>", kind="invalid_image"), "c.jpg": ["tree"]})
    page = render_html(compare(_photos(tmp_path), [google, azure], top_k=2))
    assert evil not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert "data:image/jpeg;base64," in page  # thumbnails
    for text in ("Agreement", "Latency and cost", pricing.PRICES_TAKEN, "google ↔ azure"):
        assert text in page


# -- the CLI --------------------------------------------------------------------


@pytest.fixture
def cloud_env(monkeypatch, tmp_path):
    server = FakeCloud()
    configure(monkeypatch, server, tmp_path)
    yield server
    server.close()


def test_cli_json_all_providers(cloud_env, photos_dir, capsys, tmp_path):
    report = tmp_path / "report.html"
    code = run_app(["compare", str(photos_dir / "parrot.jpg"), str(photos_dir / "grace_hopper.bmp"),
                    "--providers", "local,google,aws,azure", "--json", "-k", "3", "--html", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert [p["provider"] for p in data["providers"]] == ["local", "google", "aws", "azure"]
    first = data["photos"][0]["providers"]
    assert first["local"]["predictions"][0]["label"] == "macaw"
    assert [p["label"] for p in first["google"]["predictions"]] == ["Cat", "Mammal", "Whiskers"]
    assert len(data["agreement"]) == 6 and data["model"] == "mobilenet_v2"
    pair = next(p for p in data["agreement"] if p["providers"] == ["google", "azure"])
    assert pair["photos"] == 2 and pair["mean_agreement"] > 0.5
    assert all(p["median_seconds_per_image"] > 0 for p in data["providers"])
    assert report.is_file() and "macaw" in report.read_text()
    assert not any(secret in out + err + report.read_text() for secret in SECRETS)


def test_cli_tables(cloud_env, photos_dir, capsys):
    code = run_app(["compare", str(photos_dir / "hot_dog.jpg"), "--providers", "google,azure", "-k", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    for text in ("hot_dog.jpg", "google", "azure", "Cat", "latency and cost", "agreement", pricing.PRICES_TAKEN):
        assert text in out


def test_cli_reports_provider_errors_without_credentials(cloud_env, photos_dir, capsys, monkeypatch):
    monkeypatch.setenv("AZURE_VISION_KEY", "WRONG-AZURE-KEY-123")
    cloud_env.echo_credentials = True
    code = run_app(["compare", str(photos_dir / "parrot.jpg"), str(photos_dir / "owl.jpg"), "--providers", "google,azure"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "azure: the service refused the credentials" in err and "AZURE_VISION_KEY" in err
    assert "WRONG-AZURE-KEY-123" not in out + err
    assert "Cat" in out  # google still answered
    assert len(cloud_env.requests["azure"]) == 1  # no point sending the second photo
    # Said once, up front, and azure's column is left out rather than filled with the same error.
    assert err.count("refused the credentials") == 1 and "refused" not in out
    assert "azure" not in out


def test_cli_html_says_a_missing_provider_once(cloud_env, photos_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AZURE_VISION_ENDPOINT")
    report = tmp_path / "report.html"
    photos = [str(photos_dir / name) for name in ("parrot.jpg", "owl.jpg", "hot_dog.jpg")]
    code = run_app(["compare", *photos, "--providers", "google,azure", "--html", str(report)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.count("AZURE_VISION_ENDPOINT") == 1 and "AZURE_VISION_ENDPOINT" not in out
    page = report.read_text()
    assert page.count("AZURE_VISION_ENDPOINT") == 1 and "<th>azure</th>" not in page and "<th>google</th>" in page


def test_cli_missing_configuration_is_reported_per_provider(cloud_env, photos_dir, capsys, monkeypatch):
    monkeypatch.delenv("AZURE_VISION_ENDPOINT")
    code = run_app(["compare", str(photos_dir / "parrot.jpg"), "--providers", "azure,google", "--json"])
    out, _ = capsys.readouterr()
    assert code == 1
    data = json.loads(out)
    assert "AZURE_VISION_ENDPOINT" in data["unavailable"]["azure"]
    assert "azure" not in data["photos"][0]["providers"] and [p["provider"] for p in data["providers"]] == ["google"]
    assert data["photos"][0]["providers"]["google"]["predictions"]


@pytest.mark.parametrize("argv", [
    ["compare", "x.jpg", "--providers", "local,ibm"],
    ["compare", "x.jpg", "--providers", "google", "--html", "/no/such/folder/report.html"],
    ["compare", "x.jpg", "--providers", "google,google"],
    ["compare", "x.jpg", "--providers", ","],
])
def test_cli_usage_errors(argv, capsys):
    assert run_app(argv) == 2
    assert "error:" in capsys.readouterr().err
