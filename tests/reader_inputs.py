"""Small real inputs for the reader tests: photos, folders with sidecars, WebDataset tars; and checks."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pytest
import skimage.data
from PIL import Image

from curate.config import InputConfig
from curate.readers import READ_SCHEMA, Partition, ReadError, fetch_image, read_partition

PHOTOS = {
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "astronaut": skimage.data.astronaut,
    "rocket": skimage.data.rocket,
    "camera": skimage.data.camera,
    "hubble": skimage.data.hubble_deep_field,
}


def photo(name: str, fmt: str = "JPEG", side: int = 48) -> bytes:
    """A small real photograph encoded as ``fmt``."""
    img = Image.fromarray(PHOTOS[name]())
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(parts: list[Partition], cfg: InputConfig) -> pa.Table:
    batches = []
    for p in parts:
        got = list(read_partition(p, cfg))
        assert all(0 < b.num_rows <= cfg.read_batch_rows for b in got)
        assert all(b.schema.equals(READ_SCHEMA) for b in got)
        table = pa.concat_tables(got) if got else READ_SCHEMA.empty_table()
        assert table.num_rows == p.rows
        assert table.column("_seq").to_pylist() == list(range(p.rows))
        assert set(table.column("_partition").to_pylist()) <= {p.index}
        batches.append(table)
    return pa.concat_tables(batches)


def rows_of(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def assert_refetch(rows: list[dict]) -> None:
    """fetch_image gives the identical bytes for every readable row and ReadError otherwise."""
    for row in rows:
        if row["image"] is not None:
            assert fetch_image(row["source_uri"], row["source_index"], row["source_key"]) == row["image"]
        else:
            with pytest.raises(ReadError):
                fetch_image(row["source_uri"], row["source_index"], row["source_key"])


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    files = {
        "a/cat.jpg": photo("chelsea"),
        "a/cup.png": photo("coffee", "PNG"),
        "b/astro.JPG": photo("astronaut"),
        "b/deep/rocket.jpg": photo("rocket", "PNG"),  # PNG content under a .jpg name
        "b/man.bmp": photo("camera", "BMP"),
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "a" / "cat.txt").write_text("  a cat on a rug \n")
    (root / "a" / "cup.json").write_text('{"caption": "a cup of coffee", "url": "http://x/1"}')
    (root / "b" / "astro.txt").write_text("an astronaut")
    (root / "b" / "astro.json").write_text('{"caption": "ignored: the txt wins", "w": 512}')
    (root / "notes.md").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(photo("hubble"))
    (root / "b" / ".ipynb_checkpoints").mkdir()
    (root / "b" / ".ipynb_checkpoints" / "x.jpg").write_bytes(photo("hubble"))
    return root, files


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            if name.endswith("/"):
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path: Path) -> tuple[Path, dict[str, list[tuple[str, bytes]]]]:
    folder = tmp_path / "shards"
    folder.mkdir()
    tars = {
        "00000.tar": [
            ("00000/", b""),
            ("00000/000000000.jpg", photo("chelsea")),
            ("00000/000000000.txt", b" a cat \n"),
            ("00000/000000000.json", b'{"url": "http://x/0", "caption": "unused"}'),
            ("00000/000000001.json", b'{"caption": "coffee from json"}'),
            ("00000/000000001.png", photo("coffee", "PNG")),
            ("00000/000000002.txt", b"caption without an image"),
            ("00000/000000002.json", b'{"status": "failed_to_download"}'),
            ("00000/000000003.jpg", photo("astronaut")),
            ("00000/000000003.seg.png", photo("camera", "PNG")),  # second image: not the row's image
            ("00000/.DS_Store", b"junk"),
            ("00000/README", b"no extension: not a sample"),
        ],
        "00001.tar": [
            ("000000010.webp", photo("rocket", "WEBP")),
            ("000000010.txt", "a rocket ✓".encode()),
            ("000000011.jpeg", photo("hubble")),
        ],
    }
    for name, members in tars.items():
        write_tar(folder / name, members)
    (folder / "00000_stats.json").write_text("{}")
    return folder, tars


