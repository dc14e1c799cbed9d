"""Screenshots of the page of ``python -m cifar_pl serve`` as a person sees it: before, and after choosing photos
(what dropping them does), taken by headless Chromium over the DevTools protocol (docs/deploy.md).

    python scripts/deploy_shots.py MODEL.onnx docs/img/deploy PHOTO [PHOTO ...]

Writes ``page_empty.png`` and ``page_results.png`` into the folder and prints what the page shows for each photo.
Needs ``chromium`` on the PATH (apt-get install chromium); the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cifar_pl.serve.app import build_app  # noqa: E402
from cifar_pl.serve.engine import OnnxPredictor  # noqa: E402
from tests.helpers.browser import Browser  # noqa: E402
from tests.helpers.deploy import served  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="an exported .onnx (python -m cifar_pl export)")
    p.add_argument("out", type=Path, help="folder for the PNGs")
    p.add_argument("photos", type=Path, nargs="+", help="photos to drop on the page")
    p.add_argument("--size", default="1200,760", help="browser window WIDTH,HEIGHT (default: %(default)s)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    with served(build_app(OnnxPredictor(args.model))) as url, Browser((width, height)) as page:
        page.goto(url + "/")
        print(page.screenshot(args.out / "page_empty.png"))
        page.choose_files("#files", args.photos)
        page.wait_for(f"document.querySelectorAll('.result[data-state=done]').length === {len(args.photos)}")
        page.wait_for(
            "[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        print(page.screenshot(args.out / "page_results.png"))
        shown = page.evaluate(
            "[...document.querySelectorAll('.result')].map(d => d.querySelector('.name').textContent + ': ' + "
            "[...d.querySelectorAll('.row')].map(r => r.querySelector('.label').textContent + ' ' + "
            "r.querySelector('.pct').textContent).join(', '))"
        )
    for line in shown:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
