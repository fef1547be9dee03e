"""Generate ``_wordnet_imagenet.py``: the WordNet ancestors of the ImageNet-1k classes.

imagerec must answer "dog" with every dog breed offline and without a
WordNet download at run time, so the part of WordNet 3.0 it needs (the 1000
ImageNet classes and every hypernym above them, with their lemma names) is
generated once by this script and committed as a plain Python module.

Reproduce it (Debian's ``wordnet-base`` package installs WordNet 3.0 in
``/usr/share/wordnet``; the label file is the one the zoo's ImageNet models use)::

    apt-get install wordnet-base
    python -m imagerec.library._build_hierarchy /usr/share/wordnet \\
        ../shared/models/imagenet_labels.txt src/imagerec/library/_wordnet_imagenet.py

How a label line is matched to its synset: ImageNet's label lines are the
synset's lemmas ("tench, Tinca tinca") in the order of the sorted WordNet ids,
and a WordNet 3.0 noun id is its byte offset in ``data.noun``. So each line's
candidates are the noun synsets with the same lemmas, and the one sequence of
candidates whose offsets strictly increase is the answer; the script fails if
a line has no candidate or the choice is not forced.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _normal(name: str) -> str:
    return name.strip().replace("_", " ").lower()


def read_nouns(wordnet_dir: Path) -> tuple[dict[int, tuple[str, ...]], dict[int, tuple[int, ...]]]:
    """Lemmas and hypernyms (``@`` and ``@i``) of every noun synset, by offset."""
    lemmas: dict[int, tuple[str, ...]] = {}
    parents: dict[int, tuple[int, ...]] = {}
    with open(wordnet_dir / "data.noun", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            offset = int(fields[0])
            count = int(fields[3], 16)
            words = fields[4 : 4 + 2 * count : 2]
            position = 4 + 2 * count
            pointer_count = int(fields[position])
            ups = []
            for p in range(pointer_count):
                symbol, target, pos = fields[position + 1 + 4 * p : position + 4 + 4 * p]
                if symbol in ("@", "@i") and pos == "n":
                    ups.append(int(target))
            # WordNet marks adjective positions like "(a)"; drop the marker.
            lemmas[offset] = tuple(word.split("(")[0].replace("_", " ") for word in words)
            parents[offset] = tuple(ups)
    return lemmas, parents


def match_labels(label_lines: list[str], lemmas: dict[int, tuple[str, ...]]) -> list[int]:
    """The synset offset of each label line (see the module docstring)."""
    by_first: dict[str, list[int]] = {}
    for offset, names in lemmas.items():
        for name in names:
            by_first.setdefault(_normal(name), []).append(offset)
    candidates: list[list[int]] = []
    for line in label_lines:
        wanted = [_normal(part) for part in line.split(",") if part.strip()]
        pool = sorted(set(by_first.get(wanted[0], [])))
        exact = [o for o in pool if {_normal(n) for n in lemmas[o]} == set(wanted)]
        covering = [o for o in pool if set(wanted) <= {_normal(n) for n in lemmas[o]}]
        chosen = exact or covering or pool
        if not chosen:
            raise SystemExit(f"no WordNet noun synset has the lemma {wanted[0]!r} (label line {line!r})")
        candidates.append(chosen)
    # Longest strictly increasing choice, one candidate per line (dynamic programming).
    best: list[dict[int, int | None]] = []
    for row, options in enumerate(candidates):
        reachable: dict[int, int | None] = {}
        for offset in options:
            if row == 0:
                reachable[offset] = None
                continue
            previous = [p for p in best[row - 1] if p < offset]
            if previous:
                reachable[offset] = max(previous)  # the largest keeps the most room for later ones
        if not reachable:
            raise SystemExit(f"label line {row + 1} ({label_lines[row]!r}) breaks the sorted-id order")
        best.append(reachable)
    chain = [min(best[-1])]
    for row in range(len(candidates) - 1, 0, -1):
        chain.append(best[row][chain[-1]])  # type: ignore[arg-type]
    chain.reverse()
    return chain


def ancestors(offset: int, parents: dict[int, tuple[int, ...]]) -> set[int]:
    seen: set[int] = set()
    stack = [offset]
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def build(wordnet_dir: Path, labels_file: Path) -> str:
    lemmas, parents = read_nouns(wordnet_dir)
    lines = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and lines[0] == "background":
        lines = lines[1:]
    if len(lines) != 1000:
        raise SystemExit(f"expected 1000 ImageNet label lines, got {len(lines)}")
    classes = match_labels(lines, lemmas)
    keep: set[int] = set(classes)
    for offset in classes:
        keep |= ancestors(offset, parents)
    out = [
        '"""WordNet 3.0 noun synsets of the ImageNet-1k classes and all their ancestors.',
        "",
        "Generated by ``python -m imagerec.library._build_hierarchy`` from Debian's",
        "``wordnet-base`` (WordNet 3.0, Princeton University, WordNet licence) and the",
        "ImageNet label file; do not edit by hand.",
        '"""',
        "",
        "# The first name of each class, in model output order (without 'background').",
        "LABELS = (",
    ]
    out += [f"    {line.split(',')[0].strip()!r}," for line in lines]
    out += [")", "", "# WordNet id (noun offset) of each class, in the same order.", "CLASSES = ("]
    out += [f"    {offset}," for offset in classes]
    out += [")", "", "# offset: (lemmas, hypernym offsets)", "SYNSETS = {"]
    for offset in sorted(keep):
        ups = tuple(p for p in parents[offset] if p in keep)
        out.append(f"    {offset}: ({lemmas[offset]!r}, {ups!r}),")
    out += ["}", ""]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: python -m imagerec.library._build_hierarchy WORDNET_DIR LABELS_FILE OUTPUT.py")
    text = build(Path(argv[0]), Path(argv[1]))
    Path(argv[2]).write_text(text, encoding="utf-8")
    print(f"wrote {argv[2]} ({len(text):,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
