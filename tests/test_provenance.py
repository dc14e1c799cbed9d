"""The provenance of the write-ups' recipes can be checked: every value a config says comes from a write-up quotes
the write-up's own words, and the quote is there.

A recipe header (configs/writeups/, configs/transfer/) is a block of comment lines opened by ``# recipe ...:``; each
field is a line ``#   <field>  <value and tags>`` and the deeper-indented lines under it. Every field carries at
least one tag: ``[text NNN: "words of write-up NNN"]``, ``[chosen: why]`` or ``[differs: how, and why]``. The
quote of a text tag may wrap onto the next line; it is compared with the write-up in ``$CIFAR_PL_SEEDS`` (default
``../shared/seeds``) with case and runs of whitespace ignored.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import pytest

from .helpers import CONFIGS, REPO

SEEDS = Path(os.environ.get("CIFAR_PL_SEEDS", REPO.parent / "shared" / "seeds")).expanduser()
# Every config of a write-up's experiment carries a recipe header.
WITH_RECIPE = sorted((CONFIGS / "writeups").rglob("*.yaml")) + sorted((CONFIGS / "transfer").glob("*.yaml"))
TEXT_TAG = re.compile(r'\[text (\d{3}): "(.+?)"\]')
ANY_TAG_START = re.compile(r"\[(text|chosen|differs)\b")
FIELD = re.compile(r"^#   (\S.*)$")  # a field: three spaces in
CONTINUATION = re.compile(r"^#    +\S")  # deeper: the field goes on


def normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def header(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.rstrip())
    return lines


def recipe_fields(path: Path) -> list[str]:
    """Each field of the file's recipe block, its continuation lines joined on, without the comment marks."""
    lines = header(path)
    start = next((i for i, line in enumerate(lines) if re.match(r"^# recipe\b.*:$", line)), None)
    if start is None:
        return []
    fields: list[str] = []
    for line in lines[start + 1 :]:
        if CONTINUATION.match(line) and fields:
            fields[-1] += " " + line[1:].strip()
        elif m := FIELD.match(line):
            fields.append(m.group(1).strip())
        else:
            break
    return fields


def closing(text: str) -> int:
    """Index of the bracket that closes the one ``text`` starts with (a [chosen: ...] may hold brackets of its
    own), or -1."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth == 0:
            return i
    return -1


def tags(text: str) -> list[tuple[str, str]]:
    """(kind, body) of every tag in ``text``; a tag that opens but is not well formed is returned as
    ("malformed", the text from there), so a typo cannot hide a claim."""
    found = []
    for m in ANY_TAG_START.finditer(text):
        rest, kind = text[m.start() :], m.group(1)
        if kind == "text":
            t = TEXT_TAG.match(rest)
            found.append(("text", f"{t.group(1)}:{t.group(2)}") if t else ("malformed", rest[:60]))
            continue
        end = closing(rest)
        body = rest[len(kind) + 1 : end]
        ok = end > 0 and body.startswith(":") and body[1:].strip()
        found.append((kind, body[1:].strip()) if ok else ("malformed", rest[:60]))
    return found


def write_up(number: str) -> str:
    files = sorted(SEEDS.glob(f"{number}_*.txt"))
    assert len(files) == 1, f"no single write-up {number}_*.txt in {SEEDS}"
    return normalised(files[0].read_text(encoding="utf-8"))


def all_text_tags() -> list[tuple[Path, str, str]]:
    out = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        text = " ".join(line[1:].strip() for line in header(path))
        out += [(path, *body.split(":", 1)) for kind, body in tags(text) if kind == "text"]
    return out


ids = [p.relative_to(CONFIGS).as_posix() for p in WITH_RECIPE]


@pytest.mark.parametrize("path", WITH_RECIPE, ids=ids)
def test_every_recipe_field_carries_a_tag(path):
    fields = recipe_fields(path)
    assert fields, f"{path}: no recipe block (a line '# recipe ...:' and fields under it)"
    untagged = [f for f in fields if not any(kind != "malformed" for kind, _ in tags(f))]
    assert not untagged, (
        f'{path}: fields with no [text NNN: "..."], [chosen: ...] or [differs: ...]: {untagged}'
    )
    malformed = [body for f in fields for kind, body in tags(f) if kind == "malformed"]
    assert not malformed, f"{path}: tags that are not well formed: {malformed}"


@pytest.mark.parametrize("path", WITH_RECIPE, ids=ids)
def test_tags_are_well_formed_everywhere_in_the_header(path):
    text = " ".join(line[1:].strip() for line in header(path))
    assert [body for kind, body in tags(text) if kind == "malformed"] == []


def test_every_quote_is_in_its_write_up():
    if not SEEDS.is_dir():
        pytest.skip(f"the write-ups are not at {SEEDS} (set CIFAR_PL_SEEDS)")
    found = all_text_tags()
    assert len(found) > 50  # the seeds and transfer configs quote their sources throughout
    texts = {n: write_up(n) for n in {n for _, n, _ in found}}
    missing = [
        f"{p.relative_to(CONFIGS)}: [text {n}: {q!r}]" for p, n, q in found if normalised(q) not in texts[n]
    ]
    assert not missing, "quotes not found in their write-up:\n" + "\n".join(missing)


def test_the_parser_finds_fields_tags_and_bad_tags(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        '# Title line [text 001: "not in the block"]\n'
        "# recipe (the rest: base.yaml):\n"
        '#   net            model_g [text 001: "get_conv_block(in_ch=3,\n'
        '#                  mid_ch=20"] [chosen: widths [20, 40]]\n'
        "#   batch size     64\n"
        "#   epochs         30 [text]\n"
        "# run:\n"
        "#   python -m cifar_pl fit --config x.yaml\n"
        "seed_everything: 0\n"
    )
    fields = recipe_fields(path)
    assert len(fields) == 3 and fields[1] == "batch size     64"
    assert tags(fields[0]) == [
        ("text", "001:get_conv_block(in_ch=3, mid_ch=20"),
        ("chosen", "widths [20, 40]"),
    ]
    assert tags(fields[1]) == [] and tags(fields[2]) == [("malformed", "[text]")]
    assert normalised("get_conv_block(in_ch=3, mid_ch=20") in normalised(
        "get_conv_block(in_ch=3,   mid_ch=20, out_ch=20"
    )
