"""Try every bad input of the hostile-input table (tests/helpers/hostile.py, the same cases the tests assert) and print
the exit code and the line the user reads for each, as a Markdown table for docs/reliability.md.

    .venv/bin/python scripts/bad_inputs.py

Runs in a scratch folder with small made-up data; each case calls the command's real entry point.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.hostile import CASES, build_sandbox, error_line, run_case  # noqa: E402


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    places = build_sandbox(root / "files")
    (root / "work").mkdir()
    print("| bad input | command | exit | what the user reads |\n| --- | --- | --- | --- |")
    wrong = 0
    start = time.perf_counter()
    for case in CASES:
        code, stderr = run_case(case, places, root / "work")
        line = error_line(stderr) or "(no error line)"
        ok = code == case.code and "Traceback" not in stderr and case.first_line in line
        wrong += not ok
        shown = line.replace("|", "/").replace(str(root), "<tmp>")
        print(
            f"| {case.id} | {case.tool} | {code} | `{shown}`{'' if ok else ' **(unexpected)**'} |", flush=True
        )
    print(f"\n{len(CASES)} cases, {wrong} unexpected, {time.perf_counter() - start:.0f} s")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
