"""A wrong S3 credential or an unreachable endpoint: one clear line, quickly, no traceback, no secret."""
from __future__ import annotations

import socket
import tarfile
import time

import moto.settings
import pytest

from curate.cli import main
from local_s3 import local_s3
from reader_inputs import photo
from tar_inputs import add_member

SECRET = "sEcReT-never-printed-0123456789"


@pytest.fixture
def s3_with_auth(tmp_path, monkeypatch):
    """A moto server holding one tar, which from then on checks every request's credentials."""
    with local_s3() as (fs, query):
        fs.create_dir("private")
        local = tmp_path / "00000.tar"
        with tarfile.open(local, "w") as tf:
            add_member(tf, "000000000.jpg", photo("chelsea"))
        with fs.open_output_stream("private/shards/00000.tar") as out:
            out.write(local.read_bytes())
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        yield f"s3://private/shards/*.tar?{query}"


def _run(argv, capsys) -> tuple[int, str, float]:
    started = time.monotonic()
    code = main(argv)
    return code, capsys.readouterr().err, time.monotonic() - started


def test_a_wrong_credential_is_one_line_at_once(s3_with_auth, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    code, err, elapsed = _run(["run", "--input", s3_with_auth, "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and elapsed < 15, (code, elapsed, err)
    assert err.count("\n") == 1 and "Traceback" not in err and SECRET not in err
    assert ("ACCESS_DENIED" in err or "INVALID_ACCESS_KEY_ID" in err) and "check the S3 credentials" in err and "AWS_ACCESS_KEY_ID" in err


def test_a_credential_in_the_uri_is_refused_without_repeating_it(tmp_path, capsys):
    code, err, _ = _run(["run", "--input", f"s3://AKIAX:{SECRET}@bucket/x.tar", "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and SECRET not in err
    assert "credentials in an s3:// URI are not accepted" in err


def test_an_unreachable_endpoint_is_one_line_quickly(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "fast.yaml"
    config.write_text("input: {retries: 1, retry_backoff_s: 0.05}\n")
    uri = f"s3://bucket/shards/*.tar?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    code, err, elapsed = _run(["run", "--input", uri, "--config", str(config), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and elapsed < 30, (code, elapsed, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "NETWORK_CONNECTION" in err and "check the endpoint" in err
