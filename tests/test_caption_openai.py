"""The ``openai`` caption backend against a real HTTP server on loopback, scripted per prompt.

The server (``ScriptedServer``) answers a chat-completions POST by the script for its prompt:
one action per attempt (the last repeats), by default a completion that echoes the prompt and
the decoded image's size and first pixel, so an answer shows which request it belongs to.
"""
from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import random
import socket
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from caption.backends import openai as backend_mod
from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable
from caption.backends.openai import EndpointUnreachable, OpenAIBackend, check, retry_after_s
from caption.config import CaptionConfig

SECRET = "sk-refinery-test-7f3c9a1e5b2d"
KEY_ENV = "REFINERY_TEST_OPENAI_KEY"
ENV = BackendEnv("cpu", 1, "float32")


def ok():
    return ("ok",)


def status(code, body="", headers=None, content_type="text/plain"):
    return ("status", code, body, headers or {}, content_type)


def sleep_then_ok(seconds):
    return ("sleep", seconds)


def raw(body, content_type="application/json"):
    return ("status", 200, body, {}, content_type)


class ScriptedServer:
    def __init__(self):
        self.script: dict[str, list] = {}
        self.delay = lambda prompt: 0.0  # seconds before every answer
        self.attempts: dict[str, list[float]] = defaultdict(list)  # prompt -> arrival times
        self.requests: list[tuple[dict, dict]] = []  # (headers, body)
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"][0]["text"]
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.attempts[prompt].append(time.monotonic())
                    server.requests.append((dict(self.headers), body))
                    actions = server.script.get(prompt, [ok()])
                    action = actions[min(len(server.attempts[prompt]) - 1, len(actions) - 1)]
                try:
                    time.sleep(server.delay(prompt))
                    if action[0] == "sleep":
                        time.sleep(action[1])
                    if action[0] in ("ok", "sleep"):
                        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant",
                                                                            "content": echo(body)}}]}),
                                   {}, "application/json")
                    else:
                        _, code, text, headers, content_type = action
                        text = text.replace("{authorization}", self.headers.get("Authorization", ""))
                        self._send(code, text, headers, content_type)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, code, text, headers, content_type):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that timed out closed the socket before the answer

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def gaps(self, prompt):
        times = self.attempts[prompt]
        return [b - a for a, b in zip(times, times[1:])]


def echo(body) -> str:
    """What the server answers: the prompt, the image's size and its first pixel."""
    content = body["messages"][0]["content"]
    url = content[1]["image_url"]["url"]
    head, data = url.split(",", 1)
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    return f"{content[0]['text']}|{head}|{img.width}x{img.height}|{img.convert('RGB').getpixel((0, 0))}"


@pytest.fixture
def server():
    srv = ScriptedServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def make_cfg(url, **openai):
    settings = {"base_url": url, "api_key_env": KEY_ENV, "timeout_s": 10.0, "retries": 4,
                "backoff_s": 0.01, "concurrency": 4} | openai
    return CaptionConfig.model_validate({"backend": "openai", "openai": settings,
                                         "model": {"id": "served-vlm", "max_new_tokens": 77}})


@pytest.fixture
def make_backend():
    made = []

    def make(url, **openai):
        backend = OpenAIBackend(make_cfg(url, **openai))
        backend.setup(ENV)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def image(width=8, height=6, value=0):
    arr = np.zeros((height, width, 3), np.uint8)
    arr[..., 0] = value
    arr[0, 0] = (value, 255 - value, 7)
    return arr


def test_success_sends_a_chat_completion_request(server, make_backend):
    backend = make_backend(server.url)
    out = backend.caption([image(10, 4)], ["describe"])
    assert len(out) == 1 and out[0].startswith("describe|data:image/jpeg;base64|10x4|")
    headers, body = server.requests[0]
    assert body["model"] == "served-vlm" and body["max_tokens"] == 77 and body["temperature"] == 0
    assert [part["type"] for part in body["messages"][0]["content"]] == ["text", "image_url"]
    assert body["messages"][0]["role"] == "user"
    assert "Authorization" not in headers  # loopback without a key sends none
    assert backend.model_ref == "served-vlm@127.0.0.1"


def test_png_keeps_the_pixels_exactly(server, make_backend):
    backend = make_backend(server.url, image_format="png")
    out = backend.caption([image(5, 3, value=200)], ["p"])
    assert out == ["p|data:image/png;base64|5x3|(200, 55, 7)"]


def test_read_timeout_then_success_on_retry(server, make_backend):
    backend = make_backend(server.url, timeout_s=0.3)
    server.script["slow"] = [sleep_then_ok(1.5), ok()]
    start = time.monotonic()
    out = backend.caption([image()], ["slow"])
    assert out[0].startswith("slow|") and len(server.attempts["slow"]) == 2
    assert 0.3 <= server.gaps("slow")[0] < 1.2  # the client gave up at its timeout, before the answer
    assert time.monotonic() - start < 1.4


def test_429_honours_retry_after_then_backs_off(server, make_backend):
    backend = make_backend(server.url, backoff_s=0.05)
    server.script["busy"] = [status(429, headers={"Retry-After": "0.4"}), status(429), ok()]
    out = backend.caption([image()], ["busy"])
    assert out[0].startswith("busy|") and len(server.attempts["busy"]) == 3
    first, second = server.gaps("busy")
    assert 0.4 <= first < 1.0  # Retry-After, not the 0.05 s back-off
    assert 0.1 <= second < 0.4  # no header: backoff_s * 2**1, not Retry-After again


def test_retry_after_is_capped(server, make_backend, monkeypatch):
    monkeypatch.setattr(backend_mod, "MAX_WAIT_S", 0.2)
    backend = make_backend(server.url)
    server.script["later"] = [status(503, headers={"Retry-After": "3"}), ok()]
    start = time.monotonic()
    assert backend.caption([image()], ["later"])[0].startswith("later|")
    assert time.monotonic() - start < 1.0


def test_5xx_then_success_backs_off_exponentially(server, make_backend):
    backend = make_backend(server.url, backoff_s=0.1)
    server.script["flaky"] = [status(500), status(503), ok()]
    out = backend.caption([image()], ["flaky"])
    assert out[0].startswith("flaky|") and len(server.attempts["flaky"]) == 3
    first, second = server.gaps("flaky")
    assert 0.1 <= first < 0.3 and 0.2 <= second < 0.5


def test_permanent_503_fails_that_image_after_retries_plus_one(server, make_backend):
    backend = make_backend(server.url, retries=3)
    server.script["down"] = [status(503, "overloaded")]
    out = backend.caption([image(), image(9, 9)], ["down", "fine"])
    assert out[0] == CaptionFailure("HTTP 503 after 4 attempts")
    assert len(server.attempts["down"]) == 4
    assert out[1].startswith("fine|") and len(server.attempts["fine"]) == 1


@pytest.mark.parametrize("code, retried", [(400, False), (401, False), (404, False), (422, False),
                                           (408, True), (502, True), (504, True)])
def test_which_statuses_are_retried(server, make_backend, code, retried):
    backend = make_backend(server.url, retries=2)
    server.script["x"] = [status(code, "bad request: image too large")]
    out = backend.caption([image()], ["x"])
    assert isinstance(out[0], CaptionFailure)
    assert len(server.attempts["x"]) == (3 if retried else 1)
    expected = f"HTTP {code} after 3 attempts" if retried else f"HTTP {code}: bad request: image too large"
    assert out[0].message == expected


@pytest.mark.parametrize("action, reason", [
    (raw("<html><body>502 Bad Gateway</body></html>", "text/html"), "not JSON (text/html)"),
    (raw(json.dumps({"id": "x", "object": "chat.completion"})), "without choices[0].message.content"),
    (raw(json.dumps({"choices": []})), "without choices[0].message.content"),
    (raw(json.dumps({"choices": [{"message": {"content": None}}]})), "NoneType, not a string"),
    (raw(json.dumps({"choices": [{"message": {"content": [{"type": "text", "text": "a"}]}}]})),
     "list, not a string"),
])
def test_malformed_body_is_a_failure_for_that_image(server, make_backend, action, reason):
    backend = make_backend(server.url)
    server.script["bad"] = [action]
    out = backend.caption([image(), image()], ["bad", "good"])
    assert isinstance(out[0], CaptionFailure) and reason in out[0].message
    assert len(server.attempts["bad"]) == 1
    assert out[1].startswith("good|")


def test_order_is_kept_under_concurrency(server, make_backend):
    backend = make_backend(server.url, concurrency=6)
    rng = random.Random(0)
    delays = {f"prompt {i}": rng.uniform(0, 0.06) for i in range(30)}
    server.delay = lambda prompt: delays[prompt]
    images = [image(8 + i, 5, value=i) for i in range(30)]
    out = backend.caption(images, list(delays))
    assert len(out) == 30
    assert all(o.startswith(f"prompt {i}|data:image/jpeg;base64|{8 + i}x5|") for i, o in enumerate(out))
    assert server.max_in_flight > 1  # the requests did overlap


def test_concurrency_limit_is_respected(server, make_backend):
    backend = make_backend(server.url, concurrency=3)
    server.delay = lambda prompt: 0.15
    start = time.monotonic()
    out = backend.caption([image() for _ in range(12)], [f"p{i}" for i in range(12)])
    elapsed = time.monotonic() - start
    assert all(o.startswith(f"p{i}|") for i, o in enumerate(out))
    assert server.max_in_flight == 3
    assert 0.6 <= elapsed < 1.4  # 4 rounds of 3, not 12 one after another (1.8 s)


def test_the_key_is_sent_but_never_leaks(server, make_backend, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)
    backend = make_backend(server.url, retries=1)
    server.script["echo-400"] = [status(400, "rejected request with {authorization}")]
    server.script["echo-503"] = [status(503, "upstream saw {authorization}")]
    server.script["html"] = [raw("<p>{authorization}</p>", "text/html")]
    out = backend.caption([image(), image(), image(), image()], ["echo-400", "echo-503", "html", "fine"])
    assert out[3].startswith("fine|")
    assert {headers["Authorization"] for headers, _ in server.requests} == {f"Bearer {SECRET}"}
    failures = out[:3]
    assert all(isinstance(f, CaptionFailure) for f in failures)
    assert failures[0].message == "HTTP 400: rejected request with Bearer ***"  # scrubbed, not dropped
    for text in [str(failures), repr(failures), caplog.text, backend.model_ref, repr(backend)]:
        assert SECRET not in text
    assert "caption request failed" in caplog.text


def test_unreachable_endpoint_raises_for_the_whole_batch(make_backend, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}/v1", retries=2)
    with pytest.raises(EndpointUnreachable, match="unreachable: all 2 images") as err:
        backend.caption([image(), image()], ["a", "b"])
    assert "ConnectError after 3 attempts" in str(err.value) and SECRET not in str(err.value)
    assert isinstance(err.value, CaptionUnavailable)  # the stage stops instead of failing every row


def test_check_wants_a_key_only_for_a_remote_host(monkeypatch):
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1"):
        assert check(make_cfg(url)) is None
    remote = make_cfg("https://api.example.com/v1")
    problem = check(remote)
    assert problem and KEY_ENV in problem and "\n" not in problem and "not loopback" in problem
    with pytest.raises(CaptionUnavailable, match=KEY_ENV):
        OpenAIBackend(remote).setup(ENV)
    monkeypatch.setenv(KEY_ENV, SECRET)
    assert check(remote) is None
    assert OpenAIBackend(remote).model_ref == "served-vlm@api.example.com"
    monkeypatch.setenv(KEY_ENV, "  ")
    assert check(remote) is not None  # a blank key is no key


def test_check_refuses_a_bad_url_and_a_missing_httpx(monkeypatch):
    problem = check(make_cfg("ftp://user:pw@host/v1"))
    assert problem and "http:// or https://" in problem and "pw" not in problem
    monkeypatch.setitem(sys.modules, "httpx", None)
    assert check(make_cfg("http://127.0.0.1:8000/v1")) == "backend openai needs httpx: pip install 'refinery[caption]'"


def test_an_api_key_in_the_config_is_refused():
    with pytest.raises(ValidationError, match="api_key_env"):
        CaptionConfig.model_validate({"openai": {"api_key": "x"}})


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("2") == 2.0 and retry_after_s("0.5") == 0.5
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("nan") is None
    later = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_s(later) <= 30
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_caption_refuses_mismatched_or_non_rgb_inputs(server, make_backend):
    backend = make_backend(server.url)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        backend.caption([image(), image()], ["a"])
    with pytest.raises(ValueError, match="image 0 is float32"):
        backend.caption([np.zeros((4, 4, 3), np.float32)], ["a"])
    assert backend.caption([], []) == []
    assert server.requests == []
