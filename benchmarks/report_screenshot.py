"""Render a report.html in headless Chromium (Debian's ``chromium`` package) to look at it.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/report_screenshot.py demo_out/report.html -o report.png

Writes a full-page PNG (``--height`` px tall, cut into ``--pages`` of 1,200 px when asked) so that the
layout, pictures and text of the report can be checked by eye; the report itself has no scripts and no
external links, so nothing is fetched.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path, help="report.html to render")
    ap.add_argument("-o", "--output", type=Path, default=Path("report.png"), help="PNG to write")
    ap.add_argument("--width", type=int, default=1280, help="window width in px")
    ap.add_argument("--height", type=int, default=6000, help="window height in px (the page is cut there)")
    ap.add_argument("--pages", action="store_true", help="also write OUTPUT-0.png, -1.png, ... of 1,200 px each")
    args = ap.parse_args(argv)
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        print("no chromium found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--screenshot={args.output.resolve()}",
               f"--window-size={args.width},{args.height}", args.report.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    if args.pages:
        from PIL import Image

        im = Image.open(args.output)
        for i in range(0, im.size[1], 1200):
            im.crop((0, i, im.size[0], min(im.size[1], i + 1200))).save(
                args.output.with_name(f"{args.output.stem}-{i // 1200}.png"))
    print(f"{args.report} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
