"""Peak memory of a command and all its child processes (e.g. a DDP run's ranks), sampled from
/proc/<pid>/smaps_rollup (Linux). Resident memory (RSS) counts a page that several processes share (a memory-mapped
cache) once per process; PSS divides it among them, so the PSS total is what the processes really hold together.

    python bench/process_memory.py -- python -m cifar_pl fit --config configs/transfer/1_scratch.yaml \\
        --data.data_dir ../shared/data/flowers --data.image_size 256 --trainer.devices 2 --trainer.strategy ddp
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for k in map(int, kids):
        out += [k, *_children(k)]
    return out


def _rollup(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])  # kB
    except (OSError, ValueError):
        pass
    return out


def _mapping(pid: int, name: str) -> dict[str, int]:
    """Rss and Pss (kB) of the mappings of files called ``name`` in one process."""
    out = {"Rss": 0, "Pss": 0}
    inside = False
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if line and not line[0].isupper():  # a mapping's header line: address range ... path
                inside = line.rstrip().endswith("/" + name)
            elif inside and line.startswith(("Rss:", "Pss:")):
                key, value = line.split(":", 1)
                out[key] += int(value.split()[0])
    except OSError:
        pass
    return out


def main() -> None:
    """``[--file NAME] -- COMMAND ...``: also report how much of the files called NAME the processes map."""
    args = sys.argv[1:]
    name = None
    if args[:1] == ["--file"]:
        name, args = args[1], args[2:]
    cmd = args[args.index("--") + 1 :] if "--" in args else args
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"Rss": 0, "Pss": 0, "Anonymous": 0, "processes": 0, "file_rss": 0, "file_pss": 0}
    start = time.perf_counter()
    while proc.poll() is None:
        pids = [proc.pid, *_children(proc.pid)]
        rolls = [_rollup(p) for p in pids]
        python = [
            r for r, p in zip(rolls, pids, strict=True) if r.get("Rss", 0) > 100_000
        ]  # the real workers
        for key in ("Rss", "Pss", "Anonymous"):
            peak[key] = max(peak[key], sum(r.get(key, 0) for r in python))
        peak["processes"] = max(peak["processes"], len(python))
        if name:
            maps = [_mapping(p, name) for p, r in zip(pids, rolls, strict=True) if r.get("Rss", 0) > 100_000]
            peak["file_rss"] = max(peak["file_rss"], sum(m["Rss"] for m in maps))
            peak["file_pss"] = max(peak["file_pss"], sum(m["Pss"] for m in maps))
        time.sleep(0.2)
    err = proc.stderr.read()
    print(
        f"exit {proc.returncode}, {time.perf_counter() - start:.0f} s, up to {peak['processes']} processes over 100 MB"
    )
    print(f"peak total RSS {peak['Rss'] / 1024:,.0f} MB, PSS {peak['Pss'] / 1024:,.0f} MB, "
          f"anonymous {peak['Anonymous'] / 1024:,.0f} MB")  # fmt: skip
    if name:
        print(f"of which {name}, mapped: RSS {peak['file_rss'] / 1024:,.0f} MB summed over the processes, "
              f"PSS {peak['file_pss'] / 1024:,.0f} MB")  # fmt: skip
    if proc.returncode:
        print(err[-2000:])


if __name__ == "__main__":
    main()
