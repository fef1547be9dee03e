"""imagerec.library.hierarchy: the shipped WordNet table is package data, read on first use."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

from imagerec.library import hierarchy
from imagerec.library.hierarchy import Hierarchy

ROOT = Path(__file__).resolve().parent.parent

# Well-known ImageNet WordNet ids (nXXXXXXXX: the noun offset in WordNet 3.0's data.noun).
TENCH, GOLDEN_RETRIEVER, DOG, ANIMAL, BIRD = 1440764, 2099601, 2084071, 15388, 1503061


def test_importing_the_hierarchy_does_not_read_the_table_and_the_first_use_reads_it_once():
    code = (
        "import imagerec.library.hierarchy as h\n"
        "assert h._table.cache_info().misses == 0, 'read at import'\n"
        "h.Hierarchy(); h.Hierarchy()\n"
        "info = h._table.cache_info()\n"
        "assert (info.misses, info.hits) == (1, 1), info\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_table_is_package_data_that_a_wheel_ships():
    assert resources.files("imagerec.library").joinpath("wordnet_imagenet.json.gz").is_file()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["imagerec"]
    assert any(fnmatch.fnmatch("library/wordnet_imagenet.json.gz", pattern) for pattern in patterns)


def test_the_table_holds_the_imagenet_classes_and_all_their_ancestors():
    table = hierarchy._table()
    assert len(table.labels) == len(table.classes) == 1000 and len(table.synsets) == 1860
    assert table.labels[0] == "tench" and table.classes[0] == TENCH
    assert table.labels[207] == "golden retriever" and table.classes[207] == GOLDEN_RETRIEVER
    assert set(table.classes) <= set(table.synsets)
    assert all(parent in table.synsets for _lemmas, parents in table.synsets.values() for parent in parents)
    lemmas, parents = table.synsets[GOLDEN_RETRIEVER]
    assert isinstance(lemmas, tuple) and isinstance(parents, tuple) and lemmas == ("golden retriever",)


def test_labels_whose_name_has_several_senses_have_imagenets_own():
    # The sorted-id order left 41 label lines open and the old build picked the wrong sense for some of
    # them: the abacus was the slab on top of a column, the monitor a warship, the bow a ribbon.
    labels = list(hierarchy._table().labels)
    h = Hierarchy()
    synsets = dict(zip(labels, h.class_synsets(labels)))

    def kinds(label: str) -> set[str]:
        return {name for offset in synsets[label] for up in h.ancestors(offset) for name in h.lemmas(up)}

    assert "calculator" in kinds("abacus") and "slab" not in kinds("abacus")
    assert "electronic equipment" in kinds("monitor") and "warship" not in kinds("monitor")
    assert "weapon" in kinds("bow")


def test_known_relations_hold():
    h = Hierarchy()
    assert {DOG, ANIMAL} <= h.ancestors(GOLDEN_RETRIEVER) and BIRD not in h.ancestors(GOLDEN_RETRIEVER)
    assert "dog" in h.lemmas(DOG) and DOG in h.synsets_named("Domestic_Dog")
    assert {"dog", "animal", "bird", "golden retriever"} <= h.all_lemmas()
    assert sorted(h.match("dog", ["golden retriever", "tabby", "dog"])) == [0, 2]
    assert h.match("animal", ["dog", "hotdog", "cat"]) == {0: "animal", 2: "animal"}
    # The ImageNet label list maps by position (with or without "background"), keeping the two "crane"s apart.
    labels = list(hierarchy._table().labels)
    for offset, names in ((0, labels), (1, ["background", *labels])):
        synsets = h.class_synsets(names)
        cranes = [synsets[i] for i, name in enumerate(names) if name == "crane"]
        assert len(cranes) == 2 and cranes[0] != cranes[1]
        assert [any(BIRD in h.ancestors(s) for s in crane) for crane in cranes] == [True, False]
        assert synsets[offset + 207] == {GOLDEN_RETRIEVER} and synsets[:offset] == [set()] * offset


def imagenet_names():
    table = hierarchy._table()
    return list(table.labels)


def test_words_off_the_imagenet_tree_reach_it_through_the_rest_of_wordnet():
    h, labels = Hierarchy(), imagenet_names()

    def names(query: str) -> set[str]:
        return {labels[i] for i in h.match(query, labels)}

    dogs = names("dog")
    assert len(dogs) == 118
    assert names("puppy") == names("puppies") == dogs  # a puppy is a kind of dog
    kittens = names("kitten")  # "young domestic cat"
    assert {"tabby", "Siamese cat", "Persian cat"} <= kittens and not kittens & dogs and "lion" not in kittens
    assert {"seashore", "lakeside"} <= names("beach")  # a beach is part of a shore
    assert {"sports car", "convertible", "cab"} <= names("automobiles") <= names("car") == names("cars")
    assert names("sedan") <= names("car") and "sports car" in names("sedan")
    assert names("vehicle") >= names("car") | {"fireboat", "tractor"}
    assert [m.relation for m in h.meanings("beaches")] == ["part of"]
    assert h.meanings("puppy")[0][:3] == ("puppy", "kind of", "dog")


def test_vast_wordnet_categories_that_imagenet_barely_samples_match_nothing():
    h, labels = Hierarchy(), imagenet_names()
    # "teacher" is a person, but ImageNet's persons are a groom, a scuba diver and a ballplayer.
    for word in ("teacher", "democracy", "idea", "sunset"):
        assert h.match(word, labels) == {}, word


def test_the_word_table_is_generated_and_a_rebuild_is_identical():
    assert resources.files("imagerec.library").joinpath("wordnet_words.json.gz").is_file()
    wordnet = Path("/usr/share/wordnet")
    labels = ROOT.parent / "shared" / "models" / "imagenet_labels.txt"
    if not (wordnet / "data.noun").is_file() or not labels.is_file():
        import pytest

        pytest.skip("WordNet 3.0 (Debian wordnet-base) is not installed here")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_wordnet_table.py"), "--check", str(wordnet), str(labels)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
