"""Which labels a search word means: names, synonyms and WordNet ancestors.

A label matches a query when the query is one of its names (ImageNet label
lines carry comma-separated synonyms: "hotdog, hot dog, red hot"), or the
name of one of its WordNet ancestors — so "dog" finds every dog breed and
"bird" every bird. The hierarchy is WordNet 3.0, restricted to the ImageNet
classes and their ancestors, built by ``tools/build_wordnet_table.py`` and
shipped in the package as ``wordnet_imagenet.json.gz``, read on first use: it
needs no download and works offline. Labels of other models
(a learned "pets" recognizer, say) use the hierarchy through their names
when a name is a WordNet noun in that set ("dog", "cat", "bird").

Words that name nothing on that tree reach it through the rest of WordNet:
``wordnet_words.json.gz`` (same build script, read only when such a word is
asked for) sends every other WordNet noun to the tree synsets it means —
"puppy" is a kind of dog, a "beach" is part of a shore, a "kitten" is
described as a young domestic cat — and holds WordNet's irregular plurals.

>>> from imagerec.library.hierarchy import Hierarchy
>>> h = Hierarchy()
>>> sorted(h.match("dog", ["golden retriever", "tabby", "dog"]))
[0, 2]
>>> h.match("Hot-Dogs", ["hotdog"], [("hotdog", "hot dog", "red hot")])
{0: 'hot dog'}
>>> h.match("puppies", ["golden retriever", "tabby"])
{0: 'dog'}
>>> [(m.word, m.relation, m.name) for m in h.meanings("kittens")]
[('kitten', 'described as', 'domestic cat')]
"""

from __future__ import annotations

import gzip
import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import NamedTuple, Sequence

__all__ = ["Hierarchy", "Meaning", "normalize", "word_forms"]

_DATA_FILE = "wordnet_imagenet.json.gz"
_WORDS_FILE = "wordnet_words.json.gz"


class Meaning(NamedTuple):
    """How a query word reaches the tree: ``word`` is ``relation`` the synset named ``name``."""

    word: str
    relation: str  # "is" (a name on the tree), "kind of", "part of", "described as"
    name: str
    synset: int


class _Table(NamedTuple):
    labels: tuple[str, ...]  # first name of each ImageNet class, in model output order
    classes: tuple[int, ...]  # WordNet id (noun offset) of each class, same order
    synsets: dict[int, tuple[tuple[str, ...], tuple[int, ...]]]  # offset: (lemmas, hypernym offsets)


@cache
def _table() -> _Table:
    """The shipped WordNet table, read from the package on first use and kept.

    Format and provenance: ``tools/build_wordnet_table.py``.
    """
    raw = resources.files(__package__ or "imagerec.library").joinpath(_DATA_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    synsets = {offset: (tuple(lemmas), tuple(parents)) for offset, lemmas, parents in data["synsets"]}
    return _Table(tuple(data["labels"]), tuple(data["classes"]), synsets)


@cache
def _words() -> tuple[dict[str, tuple[tuple[int, str], ...]], dict[str, str]]:
    """The rest of WordNet: word -> ((tree synset, relation), ...), and irregular plural -> singular."""
    raw = resources.files(__package__ or "imagerec.library").joinpath(_WORDS_FILE).read_bytes()
    data = json.loads(gzip.decompress(raw))
    words = {word: tuple((offset, how) for offset, how in links) for word, links in data["words"]}
    return words, dict(data["plurals"])


def normalize(text: str) -> str:
    """Lower case, with ``_`` and ``-`` as spaces and runs of spaces collapsed.

    >>> normalize("  Great_White-Shark ")
    'great white shark'
    """
    return re.sub(r"\s+", " ", text.replace("_", " ").replace("-", " ")).strip().lower()


# English plurals the suffix rules get wrong, by their last word.
_IRREGULAR_PLURALS = {
    "geese": "goose", "mice": "mouse", "lice": "louse", "men": "man", "women": "woman",
    "feet": "foot", "teeth": "tooth", "children": "child", "people": "person", "oxen": "ox",
    "dice": "die", "cacti": "cactus", "fungi": "fungus", "octopi": "octopus", "radii": "radius",
    "larvae": "larva", "antennae": "antenna", "pupae": "pupa", "indices": "index", "matrices": "matrix",
}
# ... and the ones that also end longer words ("firemen", "dormice", "crowfeet").
_IRREGULAR_ENDINGS = ("men", "mice", "geese", "feet", "teeth")


def word_forms(query: str) -> list[str]:
    """The normalised query and its likely singulars, most literal first.

    Regular plurals ("dogs", "foxes", "butterflies"), ``-ves`` ("wolves" ->
    "wolf", "knives" -> "knife") and the common irregular ones ("geese",
    "mice", "men", "feet", "teeth", "children"...), also as the last word of
    a phrase ("wild geese"). Forms that are not names match nothing.

    >>> word_forms("Foxes")
    ['foxes', 'foxe', 'fox']
    >>> word_forms("wolves")[-2:], word_forms("Wild Geese")[-1], word_forms("firemen")[-1]
    (['wolf', 'wolfe'], 'wild goose', 'fireman')
    """
    text = normalize(query)
    forms = [text]
    if not text:
        return forms
    head, _, last = text.rpartition(" ")
    prefix = head + " " if head else ""
    if last in _IRREGULAR_PLURALS:
        forms.append(prefix + _IRREGULAR_PLURALS[last])
    else:
        for ending in _IRREGULAR_ENDINGS:
            if last.endswith(ending) and len(last) > len(ending):
                forms.append(text[: -len(ending)] + _IRREGULAR_PLURALS[ending])
    if text.endswith("ies") and len(text) > 4:
        forms.append(text[:-3] + "y")
    if text.endswith("s") and not text.endswith("ss") and len(text) > 3:
        forms.append(text[:-1])
    if text.endswith("es") and len(text) > 4:
        forms.append(text[:-2])
    if text.endswith("ves") and len(text) > 4:
        forms += [text[:-3] + "f", text[:-3] + "fe"]
    return list(dict.fromkeys(forms))


class Hierarchy:
    """The label hierarchy: lemma lookup and ancestors of the shipped synsets."""

    def __init__(self) -> None:
        table = _table()
        self._synsets = table.synsets
        self._by_lemma: dict[str, set[int]] = {}
        for offset, (lemmas, _parents) in self._synsets.items():
            for lemma in lemmas:
                self._by_lemma.setdefault(normalize(lemma), set()).add(offset)
        self._imagenet = table.labels
        self._classes = table.classes

    @lru_cache(maxsize=4096)
    def ancestors(self, offset: int) -> frozenset[int]:
        """Every hypernym above a synset (not the synset itself)."""
        seen: set[int] = set()
        stack = [offset]
        while stack:
            for parent in self._synsets.get(stack.pop(), ((), ()))[1]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return frozenset(seen)

    def lemmas(self, offset: int) -> tuple[str, ...]:
        return self._synsets[offset][0]

    def all_lemmas(self) -> set[str]:
        """Every (normalised) name in the hierarchy, for "did you mean" hints."""
        return set(self._by_lemma)

    def synsets_named(self, name: str) -> set[int]:
        """Shipped synsets with ``name`` among their lemmas."""
        return set(self._by_lemma.get(normalize(name), ()))

    def class_synsets(self, labels: Sequence[str]) -> list[set[int]]:
        """The synset(s) each label stands for.

        The ImageNet label list (with or without a leading ``background``)
        maps by position, so the two "crane"s stay a bird and a machine;
        other labels map through their name.
        """
        names = list(labels)
        offset = 1 if names and names[0] == "background" and len(names) == len(self._imagenet) + 1 else 0
        if tuple(names[offset:]) == self._imagenet:
            return [set() for _ in range(offset)] + [{wnid} for wnid in self._classes]
        return [self.synsets_named(name) for name in names]

    def match(
        self,
        query: str,
        labels: Sequence[str],
        synonyms: Sequence[Sequence[str]] | None = None,
    ) -> dict[int, str]:
        """Indices of the labels ``query`` means, each with the name that matched.

        A direct name or synonym match is reported as that name; a match
        through the hierarchy as the ancestor's name.
        """
        forms = word_forms(query)
        if not forms[0]:
            return {}
        by_name, by_synset = self._lookup(tuple(labels), None if synonyms is None else tuple(map(tuple, synonyms)))
        found: dict[int, str] = {}
        for form in forms:
            for index in by_name.get(form, ()):
                found.setdefault(index, form)
        for form in forms:
            for offset in sorted(self._by_lemma.get(form, ())):
                for index in by_synset.get(offset, ()):
                    found.setdefault(index, form)
        if not found:  # a word off the tree: through the rest of WordNet, named by where it led
            for meaning in self.meanings(query):
                for index in by_synset.get(meaning.synset, ()):
                    found.setdefault(index, meaning.name)
        return found

    def meanings(self, query: str) -> list[Meaning]:
        """What ``query`` means on the tree, most literal reading first; [] when nothing.

        A name on the tree means its synsets (relation ``"is"``); any other
        WordNet noun means the tree synsets the word table sends it to.
        """
        forms = self._forms(query)
        direct = [Meaning(form, "is", form, offset) for form in forms for offset in sorted(self._by_lemma.get(form, ()))]
        if direct:
            return direct
        words = _words()[0]
        for form in forms:
            if form in words:
                return [Meaning(form, how, self._synsets[offset][0][0], offset) for offset, how in words[form]]
        return []

    def _forms(self, query: str) -> list[str]:
        """:func:`word_forms` plus WordNet's own irregular plurals (``noun.exc``)."""
        forms = word_forms(query)
        if forms[0] and forms[0] not in self._by_lemma:
            plurals = _words()[1]
            head, _, last = forms[0].rpartition(" ")
            if last in plurals:
                forms.append((head + " " if head else "") + plurals[last])
        return list(dict.fromkeys(forms))

    @lru_cache(maxsize=16)
    def _lookup(self, labels: tuple[str, ...], synonyms: tuple[tuple[str, ...], ...] | None):
        """For one label list: normalised name -> label indices, synset (or ancestor) -> label indices."""
        by_name: dict[str, list[int]] = {}
        for index, names in enumerate(synonyms if synonyms is not None else [(label,) for label in labels]):
            for name in {normalize(name) for name in names}:
                by_name.setdefault(name, []).append(index)
        by_synset: dict[int, list[int]] = {}
        for index, offsets in enumerate(self.class_synsets(labels)):
            reach: set[int] = set()
            for offset in offsets:
                reach |= self.ancestors(offset) | {offset}
            for offset in reach:
                by_synset.setdefault(offset, []).append(index)
        return by_name, by_synset
