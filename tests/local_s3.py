"""A local S3 server for tests: moto on loopback (no real AWS is reached)."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs
from moto import server as moto_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_s3() -> Iterator[tuple[pafs.S3FileSystem, str]]:
    """``(filesystem, query)``: a pyarrow S3 filesystem on a fresh moto server, and the URI query
    (``endpoint_override=…&scheme=http&region=…``) that makes refinery reach the same server."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
            access_key="test", secret_key="test", allow_bucket_creation=True,
        )
        yield fs, f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    finally:
        server.stop()
