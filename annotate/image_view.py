"""Terminal image rendering for the review app, and opening the full image in the system viewer.

Contract:
- ``image_mode(requested=None)``: the rendering to use, one of ``MODES`` (``kitty``: the kitty
  terminal graphics protocol; ``sixel``: sixel graphics, which iTerm2 >= 3.5, WezTerm, foot,
  Konsole and xterm -ti vt340 speak; ``halfblock``: coloured ▀ half cells, any colour terminal).
  ``requested``, else ``$REFINERY_IMAGE_MODE``, else ``auto``: textual-image's detection, which
  queries the terminal once when this module is first imported (before Textual starts; it also
  works over SSH, the terminal answers), and falls back to half-blocks. An unknown mode is a
  ``ValueError``.
- ``ThumbnailView(mode=None)``: a Textual widget showing one JPEG (bytes) scaled to fit the
  widget, aspect kept; ``show(jpeg_bytes | None)`` replaces it (None or undecodable bytes show a
  one-line placeholder). ``mode`` is the rendering in use.
- ``open_full(path_or_bytes)``: opens the image in the system viewer (``open`` on macOS,
  ``xdg-open`` elsewhere) as a detached background process and returns at once with a one-line
  message for the status line; bytes are written to a temporary ``.jpg`` first. Without a viewer,
  or on Linux without a display (an SSH session), nothing is started and the message says so and
  names the file.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image as PILImage, UnidentifiedImageError
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static
import textual_image.renderable as detected
from textual_image.widget import HalfcellImage, SixelImage, TGPImage

MODES = ("kitty", "sixel", "halfblock")
_WIDGETS = {"kitty": TGPImage, "sixel": SixelImage, "halfblock": HalfcellImage}
ENV_MODE = "REFINERY_IMAGE_MODE"


def detected_mode() -> str:
    """What textual-image found when it queried the terminal at import."""
    if detected.Image is detected.TGPImage:
        return "kitty"
    if detected.Image is detected.SixelImage:
        return "sixel"
    return "halfblock"


def image_mode(requested: str | None = None) -> str:
    mode = (requested or os.environ.get(ENV_MODE) or "auto").strip().lower()
    if mode == "auto":
        return detected_mode()
    if mode not in MODES:
        raise ValueError(f"image mode {mode!r}: use one of auto, {', '.join(MODES)} (${ENV_MODE})")
    return mode


def _decode(jpeg: bytes | None) -> PILImage.Image | None:
    if not jpeg:
        return None
    try:
        image = PILImage.open(io.BytesIO(jpeg))
        image.load()
    except (UnidentifiedImageError, OSError):
        return None
    return image.convert("RGB") if image.mode != "RGB" else image


class ThumbnailView(Widget):
    """One thumbnail, fitted into the widget's box."""

    DEFAULT_CSS = """
    ThumbnailView { align: center middle; }
    ThumbnailView > .picture { width: auto; height: auto; }
    ThumbnailView > #no-image { width: auto; height: 1; color: $text-muted; }
    """

    def __init__(self, mode: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode = image_mode(mode)
        self._picture = _WIDGETS[self.mode](classes="picture")
        self._placeholder = Static("(no thumbnail)", id="no-image")

    def compose(self) -> ComposeResult:
        yield self._picture
        yield self._placeholder

    def on_mount(self) -> None:
        self._picture.display = False

    def show(self, jpeg: bytes | None) -> bool:
        """Show ``jpeg``; False (and the placeholder) when there is nothing decodable."""
        image = _decode(jpeg)
        self._picture.image = image
        self._picture.display = image is not None
        self._placeholder.display = image is None
        return image is not None


def _viewer() -> str | None:
    return shutil.which("open" if sys.platform == "darwin" else "xdg-open")


def open_full(path_or_bytes: str | Path | bytes) -> str:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        handle, name = tempfile.mkstemp(prefix="refinery-", suffix=".jpg")
        with os.fdopen(handle, "wb") as file:
            file.write(path_or_bytes)
        path = Path(name)
    else:
        path = Path(path_or_bytes)
        if not path.exists():
            return f"no image at {path}"
    viewer = _viewer()
    if viewer is None:
        return f"no image viewer (xdg-open/open) on this machine; the image is at {path}"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return f"no display here (SSH session?); the image is at {path}"
    process = subprocess.Popen([viewer, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # reaped when it exits, never awaited
    return f"opened {path.name} in {Path(viewer).name}"
