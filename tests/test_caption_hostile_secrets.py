"""Hostile review of the openai backend's key through ``caption run``: a real loopback endpoint,
and the key in no shard, manifest, report or log, even from an endpoint that echoes it."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import curate
from caption.config import CaptionConfig
from caption.run import run


from caption_hostile_support import STAGE, curated  # noqa: F401 (fixtures)


SECRET = "sk-hostile-7d1e0c5a9b3f"
KEY_ENV = "REFINERY_HOSTILE_OPENAI_KEY"


class _Endpoint:
    """A chat-completions server on loopback: answers 401 with the Authorization header echoed in
    the body for prompts starting with "Describe this image in one sentence" (a proxy that
    reflects headers), else a caption; ``echo_auth`` puts the header in the caption too."""

    def __init__(self, echo_auth: bool = False):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                prompt = body["messages"][0]["content"][0]["text"]
                if prompt.startswith("Describe this image in one sentence"):
                    self._send(401, json.dumps({"error": f"invalid key in header {auth}"}))
                    return
                text = f"A photo on a table. Debug {auth}." if endpoint.echo_auth else "A photo on a table."
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}))

            def _send(self, code, text):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.echo_auth = echo_auth
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoint():
    servers = []

    def start(echo_auth=False):
        servers.append(_Endpoint(echo_auth))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _openai_cfg(url: str, **over) -> CaptionConfig:
    return CaptionConfig.model_validate({
        "backend": "openai", "model": {"id": "served-vlm"}, "stage": STAGE,
        "openai": {"base_url": url, "api_key_env": KEY_ENV, "retries": 1, "backoff_s": 0.01, "timeout_s": 10.0}, **over})


def _everything_written(folder: Path) -> str:
    """Every file under ``folder`` as text, Parquet files as their decoded rows."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str) if path.suffix == ".parquet"
                         else path.read_text(errors="replace"))
    return "\n".join(parts)


def test_the_openai_key_is_in_no_shard_manifest_report_or_log(curated, tmp_path, endpoint, monkeypatch, capsys, caplog):
    from caption.cli import main

    monkeypatch.setenv(KEY_ENV, SECRET)
    server = endpoint()
    config = tmp_path / "openai.yaml"
    config.write_text(yaml.safe_dump({"backend": "openai", "model": {"id": "served-vlm"}, "stage": STAGE,
                                      "prompts": ["detailed-en", "brief-en"],  # the second prompt is refused (401)
                                      "openai": {"base_url": server.url, "api_key_env": KEY_ENV, "retries": 1,
                                                 "backoff_s": 0.01}}))
    out = tmp_path / "captioned"
    caplog.set_level(logging.DEBUG)
    assert main(["run", "--input", str(curated), "--output", str(out), "--config", str(config)]) == 0
    assert main(["report", "--input", str(out), "--samples", "4"]) == 0
    rows = curate.open(str(out)).read(["caption_status", "caption_synthetic", "caption_synthetic_2", "caption_error"],
                                      where="keep").to_pylist()
    assert all(r["caption_status"] == "ok" and r["caption_synthetic_2"] is None for r in rows)
    assert all("HTTP 401" in r["caption_error"] and "***" in r["caption_error"] for r in rows)  # scrubbed, not lost
    seen = capsys.readouterr()
    for text in (_everything_written(out), seen.out, seen.err, caplog.text):
        assert SECRET not in text


def test_an_endpoint_that_reflects_the_key_in_its_answer_never_gets_it_into_a_shard(curated, tmp_path, endpoint,
                                                                                      monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = endpoint(echo_auth=True)
    run(str(curated), str(tmp_path / "out"), _openai_cfg(server.url))
    assert SECRET not in _everything_written(tmp_path / "out")


def test_a_password_in_the_base_url_is_not_written_to_the_manifest(curated, tmp_path, endpoint):
    server = endpoint()
    url = server.url.replace("http://", "http://bob:pw-hostile-42@")
    run(str(curated), str(tmp_path / "out"), _openai_cfg(url))
    assert "pw-hostile-42" not in (tmp_path / "out" / "manifest.json").read_text()

