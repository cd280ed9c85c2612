"""``refinery caption run / mix / report`` as a user types them."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import caption_doubles
import curate
from caption.cli import main
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.pipeline import run as curate_run

ECHO = {"backend": "hf", "model": {"id": "echo"}, "stage": {"num_cpus": 0.5, "num_gpus": 0, "batch_size": 4, "actors": 1}}


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    curate_run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return root / "out"


def test_run_mix_and_report_from_the_command_line(curated, tmp_path, monkeypatch, capsys):
    caption_doubles.use(monkeypatch)
    config = tmp_path / "echo.yaml"
    config.write_text(yaml.safe_dump(ECHO))
    out = tmp_path / "captioned"
    assert main(["run", "--input", str(curated), "--output", str(out), "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    kept = curate.open(str(curated)).read(["row_key"], where="keep").num_rows
    assert f"{kept} captioned, 0 failed" in printed and f"captions:  {out}/captions/c-" in printed
    assert main(["mix", "--input", str(out), "--ratio", "0", "--seed", "1"]) == 0
    assert "version c-" in capsys.readouterr().out
    sources = curate.open(str(out)).read(["caption", "caption_source"], where="keep").to_pylist()
    assert all(r["caption_source"] == ("original" if r["caption"] else "synthetic") for r in sources)  # ratio 0
    assert main(["report", "--input", str(out)]) == 0
    assert (out / "caption-report.html").is_file() and "caption-report.html" in capsys.readouterr().out


def test_the_bundled_default_without_weights_is_one_line_saying_what_to_download(curated, tmp_path, capsys):
    code = main(["run", "--input", str(curated), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: ")
    assert "THUDM/cogvlm-chat-hf" in err and ("download" in err or "revision" in err)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_bad_arguments_and_inputs_exit_2(curated, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["mix", "--input", str(curated), "--ratio", "1.5"])
    assert err.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    assert main(["mix", "--input", str(curated)]) == 2
    assert "no caption group" in capsys.readouterr().err
    assert main(["report", "--input", str(tmp_path / "nothing")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_the_refinery_script_finds_the_caption_commands():
    done = subprocess.run([sys.executable, "-m", "curate.refinery_cli", "caption", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "run" in done.stdout and "mix" in done.stdout and "report" in done.stdout
