"""Screenshots of TensorBoard's tabs as a user's browser shows them: TensorBoard is started on a log folder, headless
Chromium loads each tab and saves a PNG. For checking by eye what a run puts in TensorBoard (docs/visualize.md).

    python scripts/tensorboard_shots.py lightning_logs/quickstart docs/img/tensorboard --tabs hparams scalars

Needs ``chromium`` on the PATH (Debian/Ubuntu: ``apt-get install chromium``) and the ``tensorboard`` of this
environment. Nothing leaves the machine: TensorBoard listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TABS = ("hparams", "scalars", "images", "histograms", "distributions", "time_series")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200 and r.read().strip() not in (b"", b"{}", b"[]"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"TensorBoard did not answer {url} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "logdir", type=Path, help="the folder TensorBoard reads (a run, an experiment or lightning_logs)"
    )
    p.add_argument("out", type=Path, help="folder for the PNGs (<tab>.png)")
    p.add_argument("--tabs", nargs="+", choices=TABS, default=["hparams", "scalars", "images", "histograms"],
                   help="tabs to take, in order (default: %(default)s)")  # fmt: skip
    p.add_argument(
        "--size", default="1600,1000", help="browser window WIDTH,HEIGHT in pixels (default: %(default)s)"
    )
    p.add_argument("--wait", type=float, default=20.0,
                   help="seconds the page may run its scripts before the shot (default: %(default)s)")  # fmt: skip
    args = p.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print("no chromium on the PATH; install it (apt-get install chromium)", file=sys.stderr)
        return 2
    if not args.logdir.is_dir():
        print(f"{args.logdir} is not a folder; give a run folder or lightning_logs", file=sys.stderr)
        return 2
    tensorboard = Path(sys.executable).with_name("tensorboard")
    port = free_port()
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(args.logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/data/runs", 60)
        for tab in args.tabs:
            png = args.out / f"{tab}.png"
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={args.size}", f"--virtual-time-budget={int(args.wait * 1000)}",
                 f"--screenshot={png.resolve()}", f"http://127.0.0.1:{port}/#{tab}"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120 + args.wait,
            )  # fmt: skip
            print(png)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
