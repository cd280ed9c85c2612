"""Read calls and bytes per sample for tar listing, reading and fetching, against the old way.

On an object store every read call on an opened file is one ranged GET, so read calls are the
cost that matters. The baseline is what the readers did before, measured in the same run on
the same 1,000-sample img2dataset tar (through a local filesystem that counts reads):
- listing: ``tarfile`` in random-access mode over the unbuffered file (a seek+read per header
  and a 1-byte read per member); now ``count_samples`` (block reads through ``ReadAhead``),
  and with img2dataset's ``_stats.json`` beside the tar;
- reading: ``tarfile`` streaming mode over an unbuffered input stream (10 KB reads); now
  ``read_tar``;
- fetching the last sample: the header scan; now one ranged read at ``source_offset``.

Run: ``.venv/bin/python bench/bench_tar_listing.py [samples]``
"""
from __future__ import annotations

import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from curate.config import InputConfig  # noqa: E402
from curate.readers import webdataset  # noqa: E402
from curate.readers.contract import TAR, Partition  # noqa: E402
from tar_inputs import counting_fs, img2dataset_tar  # noqa: E402
from reader_inputs import photo  # noqa: E402


def old_count(fs, path: str) -> int:
    count, last = 0, None
    with fs.open_input_file(path) as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
        for member in tf:
            split = webdataset.split_member(member.name) if member.isfile() else None
            if split and split[0] != last:
                count, last = count + 1, split[0]
    return count


def old_read(fs, path: str) -> int:
    samples, last = 0, None
    with fs.open_input_stream(path, compression=None) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
        for member in tf:
            split = webdataset.split_member(member.name) if member.isfile() else None
            if split:
                tf.extractfile(member).read()
                if split[0] != last:
                    samples, last = samples + 1, split[0]
    return samples


def old_fetch_last(fs, path: str, key: str) -> bytes:
    with fs.open_input_file(path) as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
        for member in tf:
            if member.name == key:
                return tf.extractfile(member).read()
    raise KeyError(key)


def measure(label: str, fn, samples: int) -> tuple[float, float, float]:
    fs, counts = counting_fs()
    webdataset.resolve = lambda ref: (fs, ref)
    start = time.perf_counter()
    fn(fs)
    seconds = time.perf_counter() - start
    per_read, per_byte = counts.reads / samples, counts.bytes / samples
    print(f"  {label:<44} {per_read:10.3f} reads/sample {per_byte:12.0f} bytes/sample {seconds * 1e3:8.1f} ms")
    return counts.reads, counts.bytes, seconds


def main(samples: int = 1000) -> None:
    images = [photo(n, side=256) for n in ("chelsea", "coffee", "astronaut", "rocket", "camera", "hubble")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "00000.tar"
        img2dataset_tar(path, [images[i % len(images)] for i in range(samples)])
        p = str(path)
        size = path.stat().st_size
        print(f"{samples} samples, {size / 2**20:.1f} MiB tar ({size // samples} bytes/sample, 3 members each)")
        suffixes = webdataset.image_suffix_set(InputConfig().image_extensions)

        print("listing")
        old = measure("old: tarfile r:* over the raw file", lambda fs: old_count(fs, p), samples)
        new = measure("new: count_samples (ReadAhead header scan)", lambda fs: webdataset.count_samples(fs, p), samples)
        (Path(tmp) / "00000_stats.json").write_text(json.dumps({"count": samples, "successes": samples}))
        stats = measure("new: count_samples with _stats.json", lambda fs: webdataset.count_samples(fs, p), samples)
        (Path(tmp) / "00000_stats.json").unlink()
        print(f"  read calls: old/new {old[0] / max(new[0], 1):.0f}x, old/stats {old[0] / max(stats[0], 1):.0f}x")

        print("reading")
        part = Partition(0, TAR, p, (), samples)
        old_r = measure("old: tarfile r|* over an unbuffered stream", lambda fs: old_read(fs, p), samples)
        new_r = measure("new: read_tar", lambda fs: sum(1 for _ in webdataset.read_tar(part, suffixes)), samples)
        print(f"  read calls: old/new {old_r[0] / max(new_r[0], 1):.0f}x")

        print("fetching the last sample")
        records = list(webdataset.read_tar(part, suffixes))
        last = records[-1]
        old_f = measure("old: header scan", lambda fs: old_fetch_last(fs, p, last.source_key), 1)
        new_f = measure(
            "new: by source_offset",
            lambda fs: webdataset.fetch_tar_image(p, last.source_index, last.source_key, suffixes, last.source_offset),
            1,
        )
        print(f"  read calls: old/new {old_f[0] / max(new_f[0], 1):.0f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
