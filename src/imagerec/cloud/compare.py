"""Run the same photos through several providers and measure how they differ.

Three numbers per provider — agreement with the others, latency, cost — and
the labels side by side:

* **agreement** of two providers on a photo: the share of each one's top-k
  labels that the other also gave, averaged both ways, after normalising
  (case, spacing, simple plurals, a small synonym table, the provider's
  own aliases, and a multi-word label's head noun, so ``Egyptian cat``
  meets ``Cat``). A label also meets the names of its WordNet synset and
  ancestors (the ImageNet hierarchy :mod:`imagerec.library.hierarchy`
  ships), so ImageNet's specific ``golden retriever`` meets a service's
  generic ``Dog``, ``macaw`` meets ``Bird``, ``pizza`` meets ``Food``;
  two siblings (``Cat``, ``Dog``) do not meet through their shared
  ancestors;
* **latency**: wall-clock seconds per image as measured here, upload and
  network included (a batched request's time is split over its images);
* **cost**: from :mod:`imagerec.cloud.pricing`, per 1,000 images and for
  this run.

>>> labels_match("Egyptian cat", "cat"), labels_match("Hot dog", "hotdog"), labels_match("hot dog", "dog")
(True, True, False)
>>> labels_match("golden retriever", "Dog"), labels_match("daisy", "Flower"), labels_match("tabby", "Dog")
(True, True, False)

A provider that cannot be used at all (no credentials, credentials refused,
nothing configured) is not a column of errors: it is said once, in
``Comparison.unavailable``, and left out of the labels, agreement and costs.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from typing import Callable, Iterable, Sequence

from ..core.errors import CloudError, UsageError
from ..core.images import ImageSource, describe_source
from ..recognizer import FileResult, Prediction
from . import pricing
from .base import Provider, UnavailableProvider

__all__ = [
    "normalise",
    "concept_keys",
    "Concept",
    "concept",
    "labels_match",
    "pair_agreement",
    "ProviderSummary",
    "PairAgreement",
    "Comparison",
    "compare",
]

# Names that mean the same thing across the services' vocabularies (Google
# and Rekognition capitalise generic nouns, ImageNet uses specific ones).
# Each group's first entry is the canonical key.
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("person", "people", "human", "human being", "man", "woman"),
    ("car", "automobile", "auto", "motor vehicle"),
    ("hotdog", "hot dog", "frankfurter", "wiener", "sausage"),
    ("cat", "felidae", "feline", "kitty", "kitten", "domestic cat"),
    ("dog", "canine", "canidae", "puppy", "domestic dog"),
    ("bird", "aves", "fowl"),
    ("parrot", "psittaciformes", "macaw", "psittacidae"),
    ("owl", "strigiformes"),
    ("flower", "blossom", "bloom"),
    ("sunflower", "helianthus", "common sunflower"),
    ("insect", "arthropod", "invertebrate", "bug"),
    ("dragonfly", "damselfly", "odonata", "darner"),
    ("clothing", "apparel", "clothes", "garment"),
    ("face", "human face"),
    ("plant", "flora", "vegetation"),
    ("food", "dish", "cuisine", "meal", "fast food"),
)
_CANONICAL: dict[str, str] = {}
for _group in _SYNONYM_GROUPS:
    for _name in _group:
        _CANONICAL.setdefault(re.sub(r"\s+", "", _name), re.sub(r"\s+", "", _group[0]))


def normalise(label: str) -> str:
    """Lower case, words separated by one space, simple plurals made singular.

    >>> normalise("  Parking_Lots "), normalise("Glasses"), normalise("Bus")
    ('parking lot', 'glass', 'bus')
    """
    words = re.sub(r"[^0-9a-z]+", " ", label.lower()).split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def concept_keys(label: str, aliases: Iterable[str] = ()) -> frozenset[str]:
    """The keys a label matches on: its compact normalised form (or its
    synonym group), and for multi-word labels not in the table, the head noun.

    >>> sorted(concept_keys("Egyptian cat"))
    ['cat', 'egyptiancat']
    """
    keys: set[str] = set()
    for name in (label, *aliases):
        text = normalise(name)
        if not text:
            continue
        compact = text.replace(" ", "")
        if compact in _CANONICAL:
            keys.add(_CANONICAL[compact])
            continue
        keys.add(compact)
        words = text.split()
        if len(words) > 1:
            keys.add(_CANONICAL.get(words[-1], words[-1]))
    return frozenset(keys)


@dataclass(frozen=True)
class Concept:
    """What a label means for matching: its own ``keys`` (see
    :func:`concept_keys`), and ``broader``: the keys of every name of its
    WordNet synset(s) and their ancestors.

    Two labels meet when one's keys are among the other's keys or broader
    names: the same thing, a synonym, or one a kind of the other.
    """

    keys: frozenset[str]
    broader: frozenset[str] = frozenset()

    def matches(self, other: "Concept") -> bool:
        return bool(self.keys & other.keys or self.keys & other.broader or self.broader & other.keys)


def concept(label: str, aliases: Iterable[str] = ()) -> Concept:
    """The :class:`Concept` of a label (and the provider's aliases for it).

    >>> "dog" in concept("golden retriever").broader
    True
    """
    aliases = tuple(aliases)
    return Concept(concept_keys(label, aliases), _broader(tuple(normalise(name) for name in (label, *aliases))))


@lru_cache(maxsize=4096)
def _broader(names: tuple[str, ...]) -> frozenset[str]:
    hierarchy = _hierarchy()
    synsets: set[int] = set()
    for name in names:
        synsets |= hierarchy.synsets_named(name)
    reach: set[int] = set()
    for synset in synsets:
        reach |= hierarchy.ancestors(synset) | {synset}
    keys = {_CANONICAL.get(compact, compact) for synset in reach for lemma in hierarchy.lemmas(synset)
            if (compact := normalise(lemma).replace(" ", ""))}
    return frozenset(keys - _TOO_BROAD)


# WordNet's top nouns, ancestors of nearly everything: no evidence of agreement.
_TOO_BROAD = frozenset({
    "entity", "physicalentity", "object", "physicalobject", "whole", "unit", "thing", "abstraction", "abstractentity",
    "matter",
})


@lru_cache(maxsize=1)
def _hierarchy():
    # The library's shipped WordNet/ImageNet hierarchy (library sits above
    # cloud in the layout); imported late so that `imagerec compare` loads it
    # only when it compares.
    from ..library.hierarchy import Hierarchy

    return Hierarchy()


def labels_match(a: str, b: str, aliases_a: Iterable[str] = (), aliases_b: Iterable[str] = ()) -> bool:
    """Whether two labels name the same thing (or one a kind of the other) after normalisation."""
    return concept(a, aliases_a).matches(concept(b, aliases_b))


def pair_agreement(a: Sequence[Concept | frozenset[str]], b: Sequence[Concept | frozenset[str]]) -> tuple[float, int]:
    """(agreement in [0, 1], number of shared labels) of two label lists given as
    concepts (or plain sets of concept keys, matched as they are).

    >>> pair_agreement([frozenset({"cat"}), frozenset({"pet"})], [frozenset({"cat"})])
    (0.75, 1)
    """
    if not a or not b:
        return 0.0, 0
    first = [x if isinstance(x, Concept) else Concept(frozenset(x)) for x in a]
    second = [x if isinstance(x, Concept) else Concept(frozenset(x)) for x in b]
    matched_a = sum(1 for item in first if any(item.matches(other) for other in second))
    matched_b = sum(1 for item in second if any(item.matches(other) for other in first))
    return (matched_a / len(first) + matched_b / len(second)) / 2, min(matched_a, matched_b)


@dataclass
class ProviderSummary:
    """One provider's run: how many images worked, how long, what it costs."""

    provider: str
    images: int
    ok: int
    errors: int
    requests: int
    wall_seconds: float
    median_seconds_per_image: float | None
    mean_seconds_per_image: float | None
    usd_per_1000: float
    estimated_usd: float
    setup_seconds: float = 0.0
    first_error: str | None = None

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        for key in ("wall_seconds", "median_seconds_per_image", "mean_seconds_per_image", "setup_seconds"):
            if data[key] is not None:
                data[key] = round(data[key], 4)
        return data


@dataclass
class PairAgreement:
    """How much two providers agree over the photos both labelled."""

    a: str
    b: str
    photos: int
    mean_agreement: float | None
    photos_with_shared_label: int
    per_photo: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "providers": [self.a, self.b],
            "photos": self.photos,
            "mean_agreement": None if self.mean_agreement is None else round(self.mean_agreement, 4),
            "photos_with_shared_label": self.photos_with_shared_label,
            "per_photo": [None if v is None else round(v, 4) for v in self.per_photo],
        }


@dataclass
class Comparison:
    """Everything ``imagerec compare`` shows: labels, agreement, latency, cost."""

    photos: list[str]
    providers: list[str]
    top_k: int
    results: dict[str, list[FileResult]]
    summaries: dict[str, ProviderSummary]
    agreement: list[PairAgreement]
    model: str | None = None
    prices_taken: str = pricing.PRICES_TAKEN
    # provider → its one-line error, for providers left out (credentials, configuration)
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Photos that failed with a provider that ran, plus one per provider left out."""
        return sum(summary.errors for summary in self.summaries.values()) + len(self.unavailable)

    def to_dict(self) -> dict:
        return {
            "photos": [
                {
                    "path": photo,
                    "providers": {name: self.results[name][i].to_dict() for name in self.providers},
                }
                for i, photo in enumerate(self.photos)
            ],
            "providers": [self.summaries[name].to_dict() for name in self.providers],
            "agreement": [pair.to_dict() for pair in self.agreement],
            "top_k": self.top_k,
            "model": self.model,
            "prices": {name: pricing.PRICES[name].to_dict() for name in self.providers if name in pricing.PRICES},
            "prices_taken": self.prices_taken,
            "unavailable": dict(self.unavailable),
        }


def compare(
    photos: Sequence[ImageSource],
    providers: Sequence[Provider],
    *,
    top_k: int = 5,
    on_result: Callable[[str, FileResult], None] | None = None,
) -> Comparison:
    """Label ``photos`` with every provider (one after the other, so their
    latencies do not disturb each other) and compare the answers.

    A provider that fails keeps its errors per photo; the others still run.
    """
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    if not providers:
        raise UsageError("no providers given")
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise UsageError(f"each provider may be given once, got {', '.join(names)}")
    photos = list(photos)
    if not photos:
        raise UsageError("no photos given")
    results: dict[str, list[FileResult]] = {}
    summaries: dict[str, ProviderSummary] = {}
    unavailable: dict[str, str] = {}
    model = None
    for provider in providers:
        callback = (lambda result, _name=provider.name: on_result(_name, result)) if on_result else None
        # One-time work (model load, client, token) is timed apart from latency.
        started = time.perf_counter()
        try:
            provider.setup()
        except CloudError as exc:
            runner: Provider = UnavailableProvider(provider.name, exc)
        else:
            runner = provider
        setup = time.perf_counter() - started
        if runner is provider and hasattr(provider, "model_name"):
            model = provider.model_name
        before = provider.requests_sent
        started = time.perf_counter()
        run = runner.label_files(photos, top_k=top_k, on_result=callback)
        wall = time.perf_counter() - started
        reason = _unusable(run)
        if reason is not None:
            unavailable[provider.name] = reason
            continue
        results[provider.name] = run
        summaries[provider.name] = _summarise(provider.name, run, wall, provider.requests_sent - before, setup)
    used = [provider for provider in providers if provider.name not in unavailable]
    agreement = _agreement(used, results, top_k)
    return Comparison(
        photos=[describe_source(photo) for photo in photos],
        providers=[provider.name for provider in used],
        top_k=top_k,
        results=results,
        summaries=summaries,
        agreement=agreement,
        model=model,
        unavailable=unavailable,
    )


def _unusable(run: list[FileResult]) -> str | None:
    """The one-line reason when a provider answered no photo for want of credentials or configuration.

    Such an error is the same for every photo, so it is said once rather than in every cell.
    """
    if not run or any(result.ok for result in run):
        return None
    error = run[0].error
    if isinstance(error, CloudError) and error.kind in ("auth", "config"):
        return str(error)
    return None


def _summarise(name: str, run: list[FileResult], wall: float, requests: int, setup: float) -> ProviderSummary:
    ok = [r for r in run if r.ok]
    times = [r.seconds for r in ok]
    errors = [r for r in run if not r.ok]
    price = pricing.PRICES.get(name)
    per_1000 = price.usd_per_1000 if price else 0.0
    return ProviderSummary(
        provider=name,
        images=len(run),
        ok=len(ok),
        errors=len(errors),
        requests=requests,
        wall_seconds=wall,
        median_seconds_per_image=statistics.median(times) if times else None,
        mean_seconds_per_image=statistics.fmean(times) if times else None,
        usd_per_1000=per_1000,
        # Billed calls are the images the service answered (a rejected image
        # may still be billed by some services; this is an estimate).
        estimated_usd=round(per_1000 * len(ok) / 1000.0, 6),
        setup_seconds=setup,
        first_error=str(errors[0].error) if errors else None,
    )


def _keys(provider: Provider, predictions: list[Prediction], top_k: int) -> list[Concept]:
    return [concept(p.label, provider.aliases(p.label)) for p in predictions[:top_k]]


def _agreement(providers: Sequence[Provider], results: dict[str, list[FileResult]], top_k: int) -> list[PairAgreement]:
    pairs = []
    for first, second in combinations(providers, 2):
        per_photo: list[float | None] = []
        shared_photos = 0
        for ra, rb in zip(results[first.name], results[second.name]):
            if not (ra.ok and rb.ok):
                per_photo.append(None)
                continue
            score, shared = pair_agreement(_keys(first, ra.predictions, top_k), _keys(second, rb.predictions, top_k))
            per_photo.append(score)
            shared_photos += shared > 0
        scored = [v for v in per_photo if v is not None]
        pairs.append(
            PairAgreement(
                first.name,
                second.name,
                photos=len(scored),
                mean_agreement=statistics.fmean(scored) if scored else None,
                photos_with_shared_label=shared_photos,
                per_photo=per_photo,
            )
        )
    return pairs
