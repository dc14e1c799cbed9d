"""docs/results.md claims only what its rows say: every experiment has result rows with a known verdict, n and a
budget, and the verdict table at the top is the one scripts/results_table.py generates from them."""

from __future__ import annotations

import importlib.util
import re

import pytest

from .helpers import REPO

spec = importlib.util.spec_from_file_location("results_table", REPO / "scripts" / "results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)
PAGE = (REPO / "docs" / "results.md").read_text()


def test_the_verdict_table_is_generated_from_the_rows():
    assert results_table.render(PAGE) == PAGE, "run python scripts/results_table.py"


def test_every_row_has_a_verdict_n_and_a_budget():
    rows = results_table.rows(PAGE)
    assert rows
    for row in rows:
        assert row["verdict"] in results_table.VERDICTS
        assert re.search(r"\bn = \d", row["measured"]), f"row {row['id']} does not say how many runs"
        assert row["why"].strip()


def test_every_experiment_section_ends_in_rows():
    sections = re.split(r"\n## (?=\d)", PAGE)[1:]
    assert sections
    for section in sections:
        assert "```yaml result" in section, section.splitlines()[0]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("verdict: roughly", "is not one of"),
        ("budget: {images: lots, epochs: 2}", "budget.images must be a count"),
    ],
)
def test_a_bad_row_is_refused(bad, message):
    row = "id: x\nexperiment: e\nclaim: c\nmeasured: m (n = 1)\nbudget: {images: 10, epochs: 2}\n"
    row += "write_up: {images: 100, epochs: null}\nverdict: agrees\nwhy: w\n"
    key = bad.split(":")[0]
    row = "\n".join(bad if line.startswith(key + ":") else line for line in row.splitlines()) + "\n"
    with pytest.raises(ValueError, match=message):
        results_table.rows(f"```yaml result\n{row}```")


def test_the_budget_fraction_is_computed():
    row = {"budget": {"images": 7002, "epochs": 10}, "write_up": {"images": 42000, "epochs": 240}}
    assert results_table.fraction(row).endswith("= 0.69%")
    row = {"budget": {"images": 4000, "epochs": 10}, "write_up": {"images": 50000, "epochs": None}}
    assert "8% (epochs not stated there)" in results_table.fraction(row)
    row = {"budget": {"images": 50000, "epochs": 300}, "write_up": {"images": 50000, "epochs": 200}}
    assert results_table.fraction(row).endswith("= 150%")  # never "1.5e+02%"
