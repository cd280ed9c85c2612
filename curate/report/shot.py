"""A PNG screenshot of a report in headless Chromium: ``python -m curate.report.shot REPORT PNG``.

Contract: ``chromium()`` finds the browser (``$CHROMIUM``, else ``chromium``,
``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on ``PATH``) or returns
``None``. ``screenshot(html, png, width, height)`` renders ``html`` in a ``width`` x ``height``
headless window and writes ``png``, cropped below the page's last non-white row (the whole
page when it is shorter than ``height``; its first ``height`` pixels otherwise).
``main(argv)`` does it from the command line: exit 0 and the PNG's path and size; exit 2
with one line saying how to install Chromium when it is missing, or what failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = ("headless Chromium not found: install it (Debian/Ubuntu: sudo apt-get install -y chromium; "
           "macOS: brew install --cask chromium) or set CHROMIUM=/path/to/chrome")
TIMEOUT_S = 180
MARGIN = 24


def chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def _trim(png: Path) -> tuple[int, int]:
    with Image.open(png) as img:
        grey = np.asarray(img.convert("L"))
    inked = np.flatnonzero((grey < 250).any(axis=1))
    bottom = min(grey.shape[0], int(inked[-1]) + 1 + MARGIN) if inked.size else grey.shape[0]
    with Image.open(png) as img:
        img.crop((0, 0, grey.shape[1], bottom)).save(png, optimize=True)
    return grey.shape[1], bottom


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 16000) -> tuple[int, int]:
    browser = chromium()
    if browser is None:
        raise FileNotFoundError(INSTALL)
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: no state from or to the user's
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
               html.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode != 0 or not png.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise RuntimeError(f"{Path(browser).name} exited with status {done.returncode}: {last}")
    return _trim(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curate.report.shot", description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html to render")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=16000, help="the window's height: the most of the page shot")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no report at {args.report}: run `refinery curate demo` (or `make demo`) first", file=sys.stderr)
        return 2
    try:
        w, h = screenshot(args.report, args.png, args.width, args.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as err:
        print(str(err).splitlines()[0], file=sys.stderr)
        return 2
    print(f"screenshot: {args.png} ({w}x{h} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
