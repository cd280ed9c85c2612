"""The ``openai`` caption backend: an OpenAI-compatible chat-completions endpoint over HTTP.

Contract (``caption.backends.base`` has the general one):
- ``check(cfg)``: None when httpx is installed, ``openai.base_url`` is an http(s) URL, and
  either the environment variable ``openai.api_key_env`` names is set (non-empty) or the host
  is loopback (a local vLLM server needs no key); else one line saying what to do.
- ``OpenAIBackend(cfg).model_ref``: ``<model.id>@<host of base_url>`` (never the key, never
  userinfo of the URL).
- ``setup(env)``: reads the key from the environment (refused as in ``check``) and opens one
  ``httpx.Client``; every connect, read and write waits at most ``openai.timeout_s``.
- ``caption(images, prompts)``: one request per image, ``POST {base_url}/chat/completions``
  with the prompt and the image as a base64 ``data:image/{jpeg|png}`` URL, ``model.id`` as
  the model, ``max_tokens = model.max_new_tokens``, ``temperature = 0``, and
  ``Authorization: Bearer <key>`` when a key is set. At most ``openai.concurrency`` requests
  are in flight; answers come back in input order.
- Retries: 408, 429, 5xx, connect errors, timeouts and other transport errors are retried
  ``openai.retries`` times, waiting ``backoff_s * 2**attempt`` or the server's
  ``Retry-After`` (seconds or an HTTP date) when it sends one, each wait at most
  ``MAX_WAIT_S``. Other statuses (400, 401, 404, ...) are not retried.
- Per-image failures: a status that is not retried, retries exhausted, or a malformed 2xx
  body (not JSON, no ``choices[0].message.content``, content not a string) give that image
  ``CaptionFailure("<short reason>")``, e.g. ``"HTTP 503 after 5 attempts"``.
- Batch failure: when *every* image of the batch ended on connection errors only (no
  response was ever received: the endpoint is down or ``base_url`` is wrong),
  ``caption`` raises ``EndpointUnreachable``, a ``CaptionUnavailable``, so a dead server
  stops the run (``caption.stage``) instead of writing every row as failed; a rerun resumes.
- The key never appears in a failure message, an exception, a log line or a repr: any text
  taken from a response or an error is scrubbed of it.
"""
from __future__ import annotations

import base64
import email.utils
import io
import ipaddress
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from urllib.parse import urlsplit

import numpy as np

from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable, need
from caption.config import CaptionConfig

log = logging.getLogger(__name__)

MAX_WAIT_S = 60.0  # the longest one wait between attempts (Retry-After included)
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
SNIPPET_CHARS = 120  # how much of an error body a failure message quotes


class EndpointUnreachable(CaptionUnavailable):
    """No image of a batch got any response from the endpoint (see module doc): the stage stops."""


def _host(base_url: str) -> str:
    return urlsplit(base_url).hostname or ""


def _safe_url(base_url: str) -> str:
    """The URL without any ``user:password@`` part, for messages."""
    parts = urlsplit(base_url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(base_url: str) -> str | None:
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"openai.base_url {base_url!r} is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"openai.base_url {_safe_url(base_url)!r} must be an http:// or https:// URL with a host"
    return None


def _key_problem(cfg: CaptionConfig, key: str | None) -> str | None:
    o = cfg.openai
    if key is None and not is_loopback(_host(o.base_url)):
        return (f"openai.base_url {_safe_url(o.base_url)} is not loopback and ${o.api_key_env} is not set: "
                f"export {o.api_key_env}=<your key> (or point base_url at a local server)")
    if key is not None and not (key.isascii() and key.isprintable()):
        return f"${o.api_key_env} holds characters an HTTP header cannot carry"
    return None


def _read_key(cfg: CaptionConfig) -> str | None:
    key = os.environ.get(cfg.openai.api_key_env, "").strip()
    return key or None


def check(cfg: CaptionConfig) -> str | None:
    """None when this backend can run with ``cfg`` (see module doc), else one line."""
    return (need(("httpx",), "backend openai") or _url_problem(cfg.openai.base_url)
            or _key_problem(cfg, _read_key(cfg)))


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def encode_image(image: np.ndarray, image_format: str) -> str:
    """A ``data:`` URL of ``image`` (uint8 RGB) as JPEG (quality 90) or PNG."""
    from PIL import Image

    buf = io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image), "RGB")
    if image_format == "jpeg":
        pil.save(buf, "JPEG", quality=90)
    else:
        pil.save(buf, "PNG")
    return f"data:image/{image_format};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _answer_text(response) -> str | CaptionFailure:
    """The caption in a 2xx response, or why the body is not a chat completion."""
    try:
        body = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown type").split(";")[0]
        return CaptionFailure(f"HTTP {response.status_code} with a body that is not JSON ({kind})")
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return CaptionFailure(f"HTTP {response.status_code} without choices[0].message.content")
    if not isinstance(content, str):
        return CaptionFailure(f"HTTP {response.status_code}: choices[0].message.content is "
                              f"{type(content).__name__}, not a string")
    return content


class OpenAIBackend:
    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        self._url = cfg.openai.base_url.rstrip("/") + "/chat/completions"
        self._key: str | None = None
        self._client = None

    @property
    def model_ref(self) -> str:
        return f"{self.cfg.model.id}@{_host(self.cfg.openai.base_url)}"

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.model_ref})"

    def setup(self, env: BackendEnv) -> None:
        import httpx

        problem = _url_problem(self.cfg.openai.base_url)
        key = _read_key(self.cfg)
        problem = problem or _key_problem(self.cfg, key)
        if problem:
            raise CaptionUnavailable(problem)
        self._key = key
        o = self.cfg.openai
        self._client = httpx.Client(timeout=httpx.Timeout(o.timeout_s),
                                    limits=httpx.Limits(max_connections=o.concurrency,
                                                        max_keepalive_connections=o.concurrency))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]:
        if self._client is None:
            raise RuntimeError("OpenAIBackend.caption before setup()")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        for i, image in enumerate(images):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i} is {image.dtype} {image.shape}, not uint8 RGB (h, w, 3)")
        if not images:
            return []
        workers = min(self.cfg.openai.concurrency, len(images))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caption-openai") as pool:
            outcomes = list(pool.map(self._caption_one, images, prompts))
        if all(unreachable for _, unreachable in outcomes):
            raise EndpointUnreachable(self._scrub(
                f"{_safe_url(self.cfg.openai.base_url)} unreachable: all {len(images)} images of the batch "
                f"failed to connect ({outcomes[0][0].message})"))
        return [result for result, _ in outcomes]

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _request_body(self, image: np.ndarray, prompt: str) -> dict:
        url = encode_image(image, self.cfg.openai.image_format)
        return {"model": self.cfg.model.id,
                "messages": [{"role": "user", "content": [{"type": "text", "text": prompt},
                                                          {"type": "image_url", "image_url": {"url": url}}]}],
                "max_tokens": self.cfg.model.max_new_tokens,
                "temperature": 0}

    def _caption_one(self, image: np.ndarray, prompt: str) -> tuple[str | CaptionFailure, bool]:
        """(the caption or its failure, whether every attempt failed to connect)."""
        import httpx

        o = self.cfg.openai
        body = self._request_body(image, prompt)
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        attempts = o.retries + 1
        only_connect_errors = True
        reason = "no attempt"
        for attempt in range(attempts):
            wait = o.backoff_s * 2 ** attempt
            try:
                response = self._client.post(self._url, json=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                reason = type(err).__name__
            except httpx.TransportError as err:  # read/write timeouts, dropped connections
                reason, only_connect_errors = type(err).__name__, False
            else:
                only_connect_errors = False
                status = response.status_code
                if 200 <= status < 300:
                    result = _answer_text(response)
                    if isinstance(result, CaptionFailure):
                        log.warning("caption request failed: %s", result.message)
                        return CaptionFailure(self._scrub(result.message)), False
                    return self._scrub(result), False  # an endpoint that echoes the key never gets it into a shard
                if status not in RETRIED_STATUSES and status < 500:
                    snippet = " ".join(response.text[:SNIPPET_CHARS].split())
                    failure = CaptionFailure(self._scrub(f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"))
                    log.warning("caption request failed: %s", failure.message)
                    return failure, False
                reason = f"HTTP {status}"
                asked = retry_after_s(response.headers.get("retry-after"))
                wait = wait if asked is None else asked
            if attempt + 1 < attempts:
                wait = min(wait, MAX_WAIT_S)
                log.debug("caption request: %s, attempt %d of %d, retrying in %.2f s", reason, attempt + 1, attempts, wait)
                time.sleep(wait)
        failure = CaptionFailure(self._scrub(f"{reason} after {attempts} attempts"))
        log.warning("caption request failed: %s", failure.message)
        return failure, only_connect_errors
