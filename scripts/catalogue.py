"""Run the catalogue of results/catalogue.yaml: every sweep behind docs/results.md at its stated budget, one sweep
after another (each sweep runs its own runs side by side on Ray where Ray is installed), and keep each finished
sweep's compact records under results/ (``python -m cifar_pl.results record``).

    python scripts/catalogue.py                       # everything, in the file's order; again to continue
    python scripts/catalogue.py --only 002_step1 004  # the sweeps whose file name starts with these
    python scripts/catalogue.py --dry-run             # the commands, nothing run

A stopped catalogue continues with the same command: each sweep skips its finished runs and resumes the others
from their last.ckpt. SIGTERM/SIGINT reach the sweep in progress, which saves and stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "results" / "catalogue.yaml"


def entries(path: Path = CATALOGUE) -> list[dict]:
    """The catalogue's entries, each with ``sweep`` (a file), ``args``, ``budget``, ``write_up``, ``data``."""
    out = yaml.safe_load(path.read_text())
    for e in out:
        missing = {"sweep", "args", "budget", "write_up"} - set(e)
        if missing:
            raise ValueError(f"{path}: entry {e.get('sweep', '?')} lacks {sorted(missing)}")
    return out


def command(entry: dict, data_root: str, extra: list[str]) -> list[str]:
    data = str(Path(data_root) / entry["data"]) if entry.get("data") else data_root
    args = [a.replace("{data_root}", data_root) for a in entry["args"]]
    return [sys.executable, "-m", "cifar_pl.sweep", entry["sweep"], "--data.data_dir", data, *args, *extra]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=None, help="sweep file names (or their starts) to run")
    p.add_argument("--data-root", default=os.environ.get("CIFAR_PL_DATA", "../shared/data"))
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--keep-going", action="store_true", help="go on to the next sweep after one fails")
    a, extra = p.parse_known_args(argv)
    todo = [e for e in entries() if not a.only or any(Path(e["sweep"]).stem.startswith(o) for o in a.only)]
    failed = []
    for e in todo:
        cmd = command(e, a.data_root, extra)
        print(f"== {Path(e['sweep']).stem}: {' '.join(cmd[1:])}", flush=True)
        if a.dry_run:
            continue
        proc = subprocess.Popen(cmd, cwd=ROOT)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait() or 130
        if rc in (130, 143):
            return rc
        if rc == 0:
            rec = subprocess.run([sys.executable, "-m", "cifar_pl.results", "record", e["sweep"]], cwd=ROOT)
            rc = rec.returncode
        if rc != 0:
            failed.append(Path(e["sweep"]).stem)
            print(f"== {Path(e['sweep']).stem}: exit {rc}", flush=True)
            if not a.keep_going:
                return rc
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(main())
