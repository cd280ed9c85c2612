"""The CLI never leaks a secret, never overwrites what it did not write, and fails in one line:
masked output URIs, fetch/sample/demo that keep user files, unusable output paths, bad S3
credentials on the output, a corrupt manifest, relative paths under `ray job submit`, a closed
stdout, and the summary's wording."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import moto.settings
import pytest

from cases import TEST_CONFIG, write_folder
from curate.cli import main
from local_s3 import local_s3

SECRET = "sEcReT-never-printed-0123456789"


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A finished demo (the bundled sample curated in process): DEMO/sample, DEMO/curated."""
    root = tmp_path_factory.mktemp("demo") / "demo-out"
    assert main(["demo", "--output", str(root)]) == 0
    return root


@pytest.fixture
def curated(demo, tmp_path) -> Path:
    """A private copy of the demo's output, to change."""
    return Path(shutil.copytree(demo / "curated", tmp_path / "curated"))


@pytest.fixture
def afile(tmp_path) -> Path:
    path = tmp_path / "afile"
    path.write_text("x\n")
    return path


# -- 2: a secret in the output URI -------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "retune", "export"])
def test_a_secret_in_the_output_uri_is_masked(command, demo, capsys):
    uri = f"s3://AKIAX:{SECRET}@bucket/out"
    argv = {"run": ["run", "--input", demo / "sample", "--output", uri],
            "retune": ["retune", "--shards", demo / "curated", "--output", uri],
            "export": ["export", "--shards", demo / "curated", "--format", "parquet", "--output", uri]}[command]
    code, out, err = _cli(argv, capsys)
    assert code == 2 and SECRET not in out + err and "s3://***@bucket/out" in err
    _one_line(err)


# -- 3: fetch never overwrites -----------------------------------------------------------------
def test_fetch_refuses_an_existing_file_and_keeps_it(demo, tmp_path, capsys):
    import curate

    output = curate.open(str(demo / "curated"))
    row_key = output.read(["row_key"], where="keep").column("row_key")[0].as_py()
    assert _cli(["fetch", "--shards", demo / "curated", "--out", tmp_path, row_key], capsys)[0] == 0
    written = next(tmp_path.glob(f"{row_key}.*"))
    written.write_bytes(b"my own file")
    code, out, err = _cli(["fetch", "--shards", demo / "curated", "--out", tmp_path, row_key], capsys)
    assert code == 2 and "exists" in err and "never overwrites" in err
    assert written.read_bytes() == b"my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [written.name]  # no temporary left behind


# -- 4: demo and sample keep what they did not write -------------------------------------------
def test_demo_reuses_a_finished_demo_and_keeps_its_retune(tmp_path, capsys):
    work = tmp_path / "demo-out"
    assert _cli(["demo", "--output", work], capsys)[0] == 0
    retuned = tmp_path / "retune.yaml"
    retuned.write_text("dedup: {radius: 4}\n")
    assert _cli(["retune", "--shards", work / "curated", "--config", retuned], capsys)[0] == 0
    before = json.loads((work / "curated" / "manifest.json").read_text())
    assert before["generation"] == 1

    code, out, err = _cli(["demo", "--output", work], capsys)
    assert code == 0, err
    assert "already holds the finished demo" in out
    after = json.loads((work / "curated" / "manifest.json").read_text())
    assert after["generation"] == 1 and after["decided_with"] == before["decided_with"]


def test_demo_refuses_a_curated_folder_holding_something_else(tmp_path, capsys):
    (tmp_path / "d" / "curated").mkdir(parents=True)
    (tmp_path / "d" / "curated" / "notes.txt").write_text("mine")
    code, _, err = _cli(["demo", "--output", tmp_path / "d"], capsys)
    assert code == 2 and "not empty" in err
    _one_line(err)
    assert (tmp_path / "d" / "curated" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "d" / "curated").iterdir()) == ["notes.txt"]


def test_sample_refuses_a_folder_of_user_files_but_rewrites_an_earlier_sample(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "000.jpg").write_bytes(b"my photo")
    code, _, err = _cli(["sample", "--output", mine], capsys)
    assert code == 2 and "not empty" in err
    _one_line(err)
    assert sorted(p.name for p in mine.iterdir()) == ["000.jpg"] and (mine / "000.jpg").read_bytes() == b"my photo"

    assert _cli(["sample", "--output", tmp_path / "s"], capsys)[0] == 0
    assert _cli(["sample", "--output", tmp_path / "s"], capsys)[0] == 0  # an earlier sample is the sample's own


# -- 5: an output path that cannot be written --------------------------------------------------
@pytest.mark.parametrize("command", ["run", "retune", "export", "config", "sample", "demo"])
def test_an_output_below_a_file_is_one_line(command, demo, afile, capsys):
    argv = {"run": ["run", "--input", demo / "sample", "--output", afile / "sub"],
            "retune": ["retune", "--shards", demo / "curated", "--output", afile / "sub"],
            "export": ["export", "--shards", demo / "curated", "--format", "parquet", "--output", afile / "sub"],
            "config": ["config", "--output", afile / "x.yaml"],
            "sample": ["sample", "--output", afile / "s"],
            "demo": ["demo", "--output", afile]}[command]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and err.startswith("error: cannot write ") and "Not a directory" in err, err
    _one_line(err)
    assert afile.read_text() == "x\n"


@pytest.mark.parametrize("target", ["/sys/refinery-nope", "/proc/refinery-x"])
def test_an_output_on_a_pseudo_filesystem_is_one_line(target, demo, capsys):
    if not Path(target).parent.is_dir():
        pytest.skip(f"no {Path(target).parent} here")
    code, _, err = _cli(["run", "--input", demo / "sample", "--output", target], capsys)
    assert code == 2 and err.startswith(f"error: cannot write {target}: "), err
    _one_line(err)


def test_an_oserror_about_another_path_is_not_hidden(demo, tmp_path, monkeypatch):
    import curate.pipeline

    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/else/entirely")

    monkeypatch.setattr(curate.pipeline, "run", broken)
    with pytest.raises(PermissionError):
        main(["run", "--input", str(demo / "sample"), "--output", str(tmp_path / "out")])


# -- 6: bad S3 credentials on the output -------------------------------------------------------
def test_a_wrong_credential_on_an_s3_output_is_one_line(demo, monkeypatch, capsys):
    with local_s3() as (fs, query):
        fs.create_dir("bkt")
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        code, out, err = _cli(["run", "--input", demo / "sample", "--output", f"s3://bkt/o?{query}"], capsys)
    assert code == 2 and SECRET not in out + err, err
    _one_line(err)
    assert err.startswith("error: cannot write s3://bkt/o: ") and "check the S3 credentials" in err
    assert "endpoint_override" not in err


def test_an_s3_output_summary_joins_paths_before_the_query(demo, capsys):
    with local_s3() as (fs, query):
        fs.create_dir("bkt")
        code, out, err = _cli(["run", "--input", demo / "sample", "--output", f"s3://bkt/out1?{query}"], capsys)
    assert code == 0, err
    assert "report:    s3://bkt/out1/report.html" in out
    assert f"curate.open('s3://bkt/out1?{query}')" in out  # what reopens it keeps the query
    assert not any("?" in line and line.startswith(("images:", "stats:", "decisions:", "manifest:", "report:"))
                   for line in out.splitlines())


# -- 7: a corrupt manifest ---------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"notjson\n", b"[1, 2]\n", b"\xff\xfe\x00garbage"])
@pytest.mark.parametrize("command", ["run", "retune", "export", "fetch"])
def test_a_corrupt_manifest_is_one_line(command, content, demo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    argv = {"run": ["run", "--input", demo / "sample", "--output", out],
            "retune": ["retune", "--shards", out],
            "export": ["export", "--shards", out, "--format", "parquet", "--output", tmp_path / "exp"],
            "fetch": ["fetch", "--shards", out, "--out", tmp_path / "f", "1"]}[command]
    code, _, err = _cli(argv, capsys)
    assert code == 2, err
    _one_line(err)
    if command == "run":  # run recognises an output by content (curate.run_state): this is not one
        assert f"{out} is not empty and not a refinery output" in err
    else:
        assert f"{out}/manifest.json is not a refinery manifest (" in err and "choose another --output" in err
    assert (out / "manifest.json").read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# -- 14: relative paths under `ray job submit` -------------------------------------------------
@pytest.mark.parametrize("command", ["export", "retune-in-place", "fetch", "sample", "config", "demo"])
def test_relative_paths_are_refused_under_ray_job_submit(command, demo, curated, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_JOB_SUBMISSION_ID", "raysubmit_test")
    before = (curated / "manifest.json").read_text()
    argv = {"export": ["export", "--shards", demo / "curated", "--format", "parquet", "--output", "relexp"],
            "retune-in-place": ["retune", "--shards", "curated"],
            "fetch": ["fetch", "--shards", demo / "curated", "--out", "relfetch", "1"],
            "sample": ["sample", "--output", "relsample"],
            "config": ["config", "--output", "rel.yaml"],
            "demo": ["demo", "--output", "reldemo"]}[command]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and "is relative" in err and "ray job submit" in err, err
    _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curated"]
    assert (curated / "manifest.json").read_text() == before


# -- 20: a closed stdout -----------------------------------------------------------------------
class _ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self):
        return False


def test_a_closed_stdout_does_not_stop_the_run(demo, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    out = tmp_path / "out"
    assert main(["run", "--input", str(demo / "sample"), "--output", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["in"] == json.loads((demo / "curated" / "manifest.json").read_text())["rows"]["in"]
    assert (out / "report.html").is_file()


# -- 23: wording -------------------------------------------------------------------------------
def test_the_summary_says_how_many_image_files_retry_errors_rewrote(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(TEST_CONFIG)
    source = write_folder(tmp_path / "in")
    away = tmp_path / "away"
    away.mkdir()
    (source / "b_chelsea.jpg").rename(away / "b_chelsea.jpg")
    (source / "b_chelsea.jpg").symlink_to("gone-b_chelsea.jpg")
    argv = ["run", "--input", source, "--output", tmp_path / "out", "--config", config]
    code, out, _ = _cli(argv, capsys)
    assert code == 0 and "written once)" in out
    (source / "b_chelsea.jpg").unlink()
    (away / "b_chelsea.jpg").rename(source / "b_chelsea.jpg")
    code, out, _ = _cli([*argv, "--retry-errors"], capsys)
    assert code == 0 and "1 rewritten by --retry-errors)" in out and "written once" not in out


def test_demo_help_says_it_runs_in_this_process(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "local Ray" not in out and "in this process" in " ".join(out.split())


def test_an_unquoted_glob_gets_a_hint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["run", "--input", "shards/00000.tar", "shards/00001.tar", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "unrecognized arguments: shards/00001.tar" in err
    assert "(quote the glob: --input 'shards/*.tar')" in err


def test_a_dry_run_of_one_partition_says_partition(demo, tmp_path, capsys):
    code, out, err = _cli(["run", "--input", demo / "sample", "--output", tmp_path / "o", "--dry-run"], capsys)
    assert code == 0, err
    assert "1 partition:" in out and "1 partitions" not in out
