"""S3 input and output: the pipeline reads WebDataset tars from an S3 server (moto, on loopback) and writes
its output there with the same commit protocol, in this process and on local Ray."""
from __future__ import annotations

import hashlib

import pytest

from local_s3 import local_s3
from cases import TEST_CONFIG, cases, write_tars
from curate.config import CurateConfig
from curate.pipeline import run
from curate.readers import fetch_image
from curate.retune import retune
from outputs import rows_by_caption

import curate


@pytest.fixture(scope="module")
def s3_uri(tmp_path_factory):
    with local_s3() as (fs, options):
        yield _fill(fs, options, tmp_path_factory)


def _fill(fs, options: str, tmp_path_factory) -> str:
    """Upload the test tars; return the input URI."""
    fs.create_dir("curation-input")
    local = tmp_path_factory.mktemp("tars")
    write_tars(local)
    for tar in sorted(local.glob("*.tar")):
        with fs.open_output_stream(f"curation-input/shards/{tar.name}") as out:
            out.write(tar.read_bytes())
    return f"s3://curation-input/shards/*.tar?{options}"


def test_output_to_s3_with_the_same_commit_protocol(s3_uri, tmp_path):
    """In this process (no Ray: the run below writes its S3 output from Ray workers)."""
    import yaml

    config = CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG))
    query = s3_uri.split("?", 1)[1]
    target = f"s3://curation-input/curated?{query}"
    local = run(s3_uri, str(tmp_path / "local"), config)
    remote = run(s3_uri, target, config)
    assert remote.manifest["rows"] == local.manifest["rows"] and remote.manifest["reasons"] == local.manifest["reasons"]
    ours, theirs = curate.open(target).read(), curate.open(str(tmp_path / "local")).read()
    assert ours.drop_columns(["source_uri"]).equals(theirs.drop_columns(["source_uri"]))
    assert run(s3_uri, target, config).already_complete
    store = curate.open(target).store
    assert store.exists("report.html") and not store.exists("_staging/inputs.json") and not store.exists(".refinery.lock")
    loose = config.model_copy(update={"rules": config.rules[:1]})
    manifest = retune(target, loose)
    assert manifest["generation"] == 1 and not store.list("decisions/g0")
    assert curate.open(target).read(["keep"]).column("keep").to_pylist().count(True) == manifest["rows"]["kept"]


def test_a_second_run_into_s3_dedups_against_the_first_through_an_index_on_s3(s3_uri, tmp_path):
    import yaml

    query = s3_uri.split("?", 1)[1]
    raw = yaml.safe_load(TEST_CONFIG)
    raw["dedup"]["index"] = f"s3://curation-input/dedup-index?{query}"
    config = CurateConfig.model_validate(raw)
    first = run(s3_uri, f"s3://curation-input/run1?{query}", config)
    second = run(s3_uri, f"s3://curation-input/run2?{query}", config)  # the same images again
    assert second.manifest["rows"]["in"] == first.manifest["rows"]["in"] and second.manifest["rows"]["kept"] == 0
    kept_first = set(curate.open(f"s3://curation-input/run1?{query}").read(["id"], where="keep").column("id").to_pylist())
    again = curate.open(f"s3://curation-input/run2?{query}").read(["id", "reasons", "dup_of"]).to_pylist()
    for row in again:
        if row["id"] in kept_first:
            assert row["reasons"][-1] == "exact_duplicate" and row["dup_of"] == row["id"]


def test_pipeline_reads_tars_from_s3_and_writes_to_s3_on_ray(s3_uri, tmp_path, local_ray):
    """On local Ray (last in this module: the tests above run in this process, before Ray starts): workers
    read the tars from S3 and write the output to S3; rows, reasons and source references as listed, and
    the same table as the in-process run into a local folder."""
    import yaml

    config = CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG))
    query = s3_uri.split("?", 1)[1]
    target = f"s3://curation-input/on-ray?{query}"
    assert local_ray.is_initialized()  # so the run goes to Ray whatever its size
    result = run(s3_uri, target, config)
    rows = rows_by_caption(target)
    assert len(rows) == len(cases()) == result.manifest["rows"]["in"]
    for key, (data, caption, reasons) in cases().items():
        row = rows[caption]
        assert row["reasons"] == reasons, key
        assert row["source_uri"].startswith("s3://curation-input/shards/"), key
        if data:
            assert row["id"] == hashlib.sha256(data).hexdigest(), key
            # Enough to fetch the bytes again, kept or rejected.
            assert fetch_image(row["source_uri"], row["source_index"], row["source_key"]) == data, key
    store = curate.open(target).store
    assert store.exists("report.html") and not store.exists("_staging/inputs.json") and not store.exists(".refinery.lock")
    in_process = tmp_path / "in-process"
    local_ray.shutdown()  # the reference run goes in this process
    local = run(s3_uri, str(in_process), config)
    assert local.manifest["rows"] == result.manifest["rows"] and local.manifest["reasons"] == result.manifest["reasons"]
    ours, theirs = curate.open(target).read(), curate.open(str(in_process)).read()
    assert ours.drop_columns(["source_uri"]).equals(theirs.drop_columns(["source_uri"]))
