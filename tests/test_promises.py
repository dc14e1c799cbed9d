"""Every promise README.md and docs/*.md make names the test that checks it (issue 36).

A sentence that promises a behaviour (one of PROMISE_WORDS: always, never, bitwise, any, nothing, exact, ...) ends
with ``(tested: tests/test_x.py::test_name)`` (several, comma-separated; ``Class::test_name`` and parametrized ids
``test_name[id]`` allowed), or, where no test can check it, says what was measured and how:
``(measured: bench/x.py)``. The named test files are parsed (not imported) and each named test must exist. A
sentence with a promise word that is no behavioural promise ("any argument after the file goes to every run" is
one) is listed in NOT_PROMISES with the reason; an entry that matches no sentence any more fails too, so the list
stays short and honest. Every page under docs/ is read, those added later included.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from .helpers import REPO

PROMISE_WORDS = ("always", "never", "bitwise", "any", "nothing", "exact", "exactly", "guaranteed", "whatever")
PROMISE = re.compile(r"\b(" + "|".join(PROMISE_WORDS) + r")\b", re.IGNORECASE)
MARKER = re.compile(r"[(;]\s*(tested|measured):\s*([^();]*)[);]")  # (tested: x) or (...; tested: x)
TEST_REF = re.compile(r"^(?P<path>[\w./-]+\.py)::(?P<name>[\w:]+?)(?:\[[^\]]*\])?$")
REPO_PATH = re.compile(r"(?<![\w/.])((?:bench|scripts|tests|configs|cifar_pl|docs|results)/[\w./-]*\w)")
ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|et al|vs|cf|etc)\.", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(*\[\"'])")

# (page, a piece of the sentence): why the sentence is no behavioural promise. Prefer rewording to an entry here.
NOT_PROMISES: dict[tuple[str, str], str] = {
    ("docs/results.md", "never as a verdict row"): "what the page's verdict rows may hold: an editorial rule",
}


@dataclass(frozen=True)
class Sentence:
    page: str
    line: int
    text: str
    caption: str = ""  # a table row: the sentence before the table, whose marker covers every row
    verdict: bool = False  # a row of a table with a verdict column: what a measurement gave, not a promise

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Paragraphs, list items, headings and table rows, each with its first line; code blocks and HTML comments
    are left out (an empty block stands where they were)."""
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.DOTALL)
    blocks: list[tuple[int, list[str]]] = []
    fence = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = not fence
        if fence or not stripped or stripped.startswith("```"):
            blocks.append((number, []))
        elif (
            re.match(r"([*+-]|\d+\.)\s|#|\|", stripped)
            or not blocks
            or not blocks[-1][1]
            or blocks[-1][1][-1].startswith("|")
        ):
            blocks.append((number, [stripped]))
        else:
            blocks[-1][1].append(stripped)
    return blocks


def _hidden(m: re.Match) -> str:
    return re.sub(r"[.!?]", lambda c: f"\0{ord(c.group(0))}\0", m.group(0))


def sentences(text: str, page: str = "page.md") -> list[Sentence]:
    """The prose sentences of a markdown page. A marker standing alone after a full stop belongs to the sentence
    before it; a table row is one sentence, covered by a marker in the sentence just before the table."""
    found: list[Sentence] = []
    caption, previous_row, verdicts = "", False, False
    for number, lines in _blocks(text):
        if not lines:
            continue
        joined = " ".join(lines)
        if joined.startswith("|"):
            if not previous_row:
                caption = found[-1].text if found and found[-1].line < number else ""
                verdicts = "verdict" in [cell.strip().lower() for cell in joined.strip("|").split("|")]
            previous_row = True
            if not re.fullmatch(r"[|:\s-]+", joined):  # not the |---| line
                found.append(Sentence(page, number, joined, caption, verdicts))
            continue
        previous_row = False
        # no sentence ends inside inline code or after an abbreviation
        joined = ABBREVIATIONS.sub(_hidden, re.sub(r"`[^`]*`", _hidden, joined))
        for piece in SENTENCE_END.split(joined):
            piece = re.sub(r"\0(\d+)\0", lambda m: chr(int(m.group(1))), piece).strip()
            if found and found[-1].line == number and MARKER.fullmatch(piece.rstrip(".")):
                found[-1] = Sentence(page, number, f"{found[-1].text} {piece}")
            elif piece:
                found.append(Sentence(page, number, piece))
    return found


def promise_words(sentence: str) -> list[str]:
    """Promise words in a sentence's prose: inline code, link targets and markers are not prose."""
    prose = MARKER.sub("", sentence)
    prose = re.sub(r"`[^`]*`", "", prose)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)
    return [w.lower() for w in PROMISE.findall(prose)]


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """The test names a file defines: module-level ``test_*`` functions and ``Class::test_*`` methods."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}::{f.name}"
                for f in node.body
                if isinstance(f, functions) and f.name.startswith("test_")
            }
    return frozenset(names)


def marker_problems(sentence: Sentence, root: Path = REPO) -> list[str]:
    """What is wrong with the (tested: ...) and (measured: ...) references of one sentence."""
    wrong: list[str] = []
    for kind, body in MARKER.findall(sentence.text):
        if kind == "measured":
            if not body.strip():
                wrong.append(f"(measured: ) says not what was measured or how in {sentence}")
            for path in REPO_PATH.findall(body):
                if not (root / path.rstrip(".,;")).exists():
                    wrong.append(f"{path} does not exist, named in {sentence}")
            continue
        refs = [r.strip() for r in body.split(",") if r.strip()]
        if not refs:
            wrong.append(f"(tested: ) names no test in {sentence}")
        for ref in refs:
            m = TEST_REF.match(ref)
            if not m:
                wrong.append(f"{ref!r} is not path::test_name in {sentence}")
            elif not (root / m["path"]).is_file():
                wrong.append(f"{m['path']} does not exist, named in {sentence}")
            elif m["name"] not in defined_tests(root / m["path"]):
                wrong.append(f"{m['path']} has no test {m['name']}, named in {sentence}")
    return wrong


def unbacked(sentence: Sentence) -> bool:
    """A sentence with a promise word that names neither a test nor a measurement and is not listed as none."""
    if sentence.verdict or not promise_words(sentence.text):
        return False
    if MARKER.search(sentence.text) or MARKER.search(sentence.caption):
        return False
    return not any(page == sentence.page and piece in sentence.text for page, piece in NOT_PROMISES)


def all_sentences() -> list[Sentence]:
    return [s for path in pages() for s in sentences(path.read_text(), str(path.relative_to(REPO)))]


def test_every_named_test_exists():
    wrong = [problem for s in all_sentences() for problem in marker_problems(s)]
    assert not wrong, "\n".join(wrong)


def test_every_promise_names_its_test_or_what_was_measured():
    missing = [str(s) for s in all_sentences() if unbacked(s)]
    assert not missing, (
        "these sentences promise a behaviour (" + ", ".join(PROMISE_WORDS) + ") without naming a test, "
        "(tested: tests/x.py::test_name), or what was measured, (measured: bench/x.py); reword them, or list them "
        "in NOT_PROMISES with why they promise nothing:\n" + "\n".join(missing)
    )


def test_every_not_a_promise_entry_matches_a_sentence():
    texts = {(s.page, s.text) for s in all_sentences()}
    stale = [key for key in NOT_PROMISES if not any(p == key[0] and key[1] in t for p, t in texts)]
    assert not stale, f"NOT_PROMISES entries that match no sentence any more: {stale}"
    assert all(reason.strip() for reason in NOT_PROMISES.values())


PAGE = """# A page

A run never writes outside its folder (tested: tests/test_promises.py::test_every_named_test_exists).
The loader is exact. (tested: tests/test_promises.py::test_no_such_test)

```bash
python -m cifar_pl fit   # any value
```

* Any argument goes to the run (measured: bench/no_such_bench.py); it is fast.
* A checkpoint is always whole (tested: tests/no_such_file.py::test_x, tests/test_promises.py::test_x[a-b]).
* Resume is bitwise, e.g. after a stop.
* Resume is `exact` by design (tested: tests/test_promises.py::test_every_named_test_exists[one]).

The nets:

| net | what |
| --- | --- |
| `model_gap` | GAP head, any input size |

The stops (tested: tests/test_promises.py::test_every_named_test_exists):

| event | what happens |
| --- | --- |
| SIGKILL | nothing is written |

| claim | measured | verdict |
| --- | --- | --- |
| BN always converges faster | the plain net never leaves chance | not testable |
"""


def test_the_check_finds_missing_tests_files_and_unbacked_promises():
    found = sentences(PAGE, "page.md")
    by_text = {s.text.split(" (")[0]: s for s in found}
    assert "The loader is exact." in by_text  # the marker after the full stop stays with its sentence
    assert MARKER.search(by_text["The loader is exact."].text)
    assert not any("python -m" in s.text for s in found)  # code blocks are not prose
    wrong = [p for s in found for p in marker_problems(s)]
    assert any("has no test test_no_such_test" in p for p in wrong)
    assert any("bench/no_such_bench.py does not exist" in p for p in wrong)
    assert any("tests/no_such_file.py does not exist" in p for p in wrong)
    assert any("has no test test_x" in p and "always" in p for p in wrong)  # test_x[a-b]: the id is stripped
    assert not any("never writes" in p or "by design" in p for p in wrong)
    bare = [s.text for s in found if unbacked(s)]
    assert bare == ["* Resume is bitwise, e.g. after a stop.", "| `model_gap` | GAP head, any input size |"]
    assert sentences("A. B (tested: a.py::t).\nC.", "p")[1].line == 1


@pytest.mark.parametrize("text", ["Nothing to see", "`never` in code", "test_never_fails", "[link](any.md)"])
def test_promise_words_are_whole_words_of_the_prose(text):
    assert bool(promise_words(text)) == (text == "Nothing to see")
