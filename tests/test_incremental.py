"""A second run over new input is deduplicated against what the first kept (the dedup index)."""
from __future__ import annotations

import json
import shutil

import yaml

import curate
from cases import TEST_CONFIG, cases, write_folder
from curate.config import CurateConfig
from curate.pipeline import run
from curate.retune import retune
from outputs import check_manifest, rows_by_caption
from photos import encode, photo


def _config(index) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    raw["dedup"]["index"] = str(index)
    return CurateConfig.model_validate(raw)


def test_second_run_rejects_copies_of_what_the_first_kept(tmp_path):
    index = tmp_path / "index"
    first_in = write_folder(tmp_path / "in1")
    first = run(str(first_in), str(tmp_path / "out1"), _config(index))
    kept_first = {r["caption"]: r["id"] for r in rows_by_caption(tmp_path / "out1").values() if r["keep"]}

    second_in = tmp_path / "in2"
    second_in.mkdir()
    astronaut = cases()["a_astronaut"][0]
    (second_in / "same.jpg").write_bytes(astronaut)                               # the same bytes
    (second_in / "same.txt").write_text("astronaut again, same bytes")
    (second_in / "requality.jpg").write_bytes(encode(photo("astronaut"), quality=70))  # a near copy
    (second_in / "requality.txt").write_text("astronaut again, recompressed")
    (second_in / "new.jpg").write_bytes(encode(photo("grace_hopper")))             # new
    (second_in / "new.txt").write_text("a new photo")
    second = run(str(second_in), str(tmp_path / "out2"), _config(index))

    rows = rows_by_caption(tmp_path / "out2")
    astronaut_id = kept_first["an astronaut in a white suit in front of a flag"]
    assert rows["astronaut again, same bytes"]["reasons"] == ["exact_duplicate"]
    assert rows["astronaut again, same bytes"]["dup_of"] == astronaut_id
    assert rows["astronaut again, recompressed"]["reasons"] == ["near_duplicate"]
    assert rows["astronaut again, recompressed"]["dup_of"] == astronaut_id
    assert rows["a new photo"]["keep"]
    assert second.manifest["rows"] == {"in": 3, "kept": 1, "rejected": 2}
    assert second.manifest["decided_with"]["prior_rows"] == first.manifest["rows"]["kept"]
    check_manifest(tmp_path / "out2")

    listing = json.loads((index / "index.json").read_text())
    assert sorted(p["rows"] for p in listing["parts"]) == sorted([first.manifest["rows"]["kept"], 1])
    # A retune of the first output is not deduplicated against itself, and replaces its own part.
    again = retune(str(tmp_path / "out1"), _config(index))
    assert again["rows"] == first.manifest["rows"]
    listing = json.loads((index / "index.json").read_text())
    assert len(listing["parts"]) == 2 and {p["generation"] for p in listing["parts"]} == {0, 1}


def test_a_run_killed_after_its_manifest_is_recorded_in_the_index_by_the_next_call(tmp_path):
    index = tmp_path / "index"
    source = write_folder(tmp_path / "in")
    run(str(source), str(tmp_path / "out"), _config(index))
    shutil.rmtree(index)  # as if killed between the manifest and the index write
    again = run(str(source), str(tmp_path / "out"), _config(index))
    assert again.already_complete
    listing = json.loads((index / "index.json").read_text())
    assert [p["rows"] for p in listing["parts"]] == [again.manifest["rows"]["kept"]]
    assert curate.open(str(tmp_path / "out")).read(["id"], where="keep").num_rows == again.manifest["rows"]["kept"]
