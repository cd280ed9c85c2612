"""An img2dataset-style input (tars of key.jpg + key.txt + key.json with its documented fields),
curated in-process, for the fetch / export / Hugging Face tests."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import yaml
from PIL import Image

from cases import TEST_CONFIG, cases
from curate.config import CurateConfig
from curate.pipeline import run
from photos import encode, photo


def items() -> list[tuple[str, bytes, str, str]]:
    """(key, bytes, extension, caption): the labelled cases plus one PNG photo."""
    out = [(f"{n:09d}", data, "jpg", caption) for n, (_, (data, caption, _)) in enumerate(cases().items())]
    out.append((f"{len(out):09d}", encode(photo("grace_hopper"), "PNG"), "png", "a portrait, as PNG"))
    return out


def sidecar(key: str, data: bytes, caption: str) -> dict:
    try:
        width, height = Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - damaged cases have no size; img2dataset would not have stored them
        width = height = None
    return {"url": f"https://images.example.com/{key}.jpg", "key": key, "status": "success", "caption": caption,
            "width": width, "height": height, "original_width": 2 * width if width else None,
            "original_height": 2 * height if height else None, "exif": "{}", "error_message": None}


def write_i2d_tars(root: Path, per_tar: int = 6) -> str:
    root.mkdir(parents=True, exist_ok=True)
    all_items = items()
    for n in range(0, len(all_items), per_tar):
        with tarfile.open(root / f"{n // per_tar:05d}.tar", "w") as tar:
            for key, data, ext, caption in all_items[n : n + per_tar]:
                meta = json.dumps(sidecar(key, data, caption)).encode()
                for name, payload in ((f"{key}.{ext}", data), (f"{key}.txt", caption.encode()), (f"{key}.json", meta)):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return str(root / "*.tar")


def curated(root: Path) -> Path:
    """``root/out``: the img2dataset-style input under ``root/in`` curated with the tests' config."""
    run(write_i2d_tars(root / "in"), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return root / "out"
