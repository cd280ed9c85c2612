"""S3 filesystems for inputs and outputs, with bounded timeouts, so that nothing waits forever.

Contract: ``s3_filesystem(bucket, query, resolve_region)`` builds a ``pyarrow.fs.S3FileSystem`` from a URI's
query (``endpoint_override``, ``scheme``, ``region``, ``allow_bucket_creation``,
``allow_bucket_deletion``, ``tls_ca_file_path``; any other key is a ``ValueError`` naming it)
with a connect timeout of ``CONNECT_TIMEOUT_S``, a socket read timeout of
``REQUEST_TIMEOUT_S`` (where the SDK honours it) and at most ``SDK_ATTEMPTS`` attempts per
request inside the SDK (refinery's own back-off, ``input.retries``, comes on top for reads).
With ``resolve_region`` and neither ``region`` nor ``endpoint_override``, the bucket's region
is asked of AWS, as ``FileSystem.from_uri`` does (inputs); otherwise the SDK's default region
applies (outputs, opened by every worker). Credentials come from the usual AWS environment (variables,
``~/.aws``, instance metadata); a URI carrying them (``s3://key:secret@bucket``) is a
``ValueError`` that does not repeat them. ``masked(text)`` is ``text`` with the ``user:secret@``
of every URI in it replaced by ``***@``, for any line that shows a URI.
"""
from __future__ import annotations

import re

import pyarrow.fs as pafs

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
SDK_ATTEMPTS = 2
QUERY_KEYS = ("endpoint_override", "scheme", "region", "allow_bucket_creation", "allow_bucket_deletion", "tls_ca_file_path")
_FLAGS = ("allow_bucket_creation", "allow_bucket_deletion")
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s'\"]*@")


def masked(text: str) -> str:
    """``text`` with any ``user:secret@`` after a URI scheme replaced by ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", text)


def s3_filesystem(bucket: str, query: dict[str, str], resolve_region: bool = True) -> pafs.S3FileSystem:
    """An S3 filesystem for ``bucket`` with the URI's ``query`` options (see module doc)."""
    if "@" in bucket:
        raise ValueError("credentials in an s3:// URI are not accepted (URIs are written to the manifest); "
                         "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE instead")
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown S3 URI option(s) {unknown[:5]}; known: {', '.join(QUERY_KEYS)}")
    options: dict = {k: v for k, v in query.items() if k not in _FLAGS}
    options.update({k: query[k].lower() in ("1", "true", "yes") for k in _FLAGS if k in query})
    if resolve_region and bucket and "region" not in options and "endpoint_override" not in options:
        options["region"] = pafs.resolve_s3_region(bucket)
    return pafs.S3FileSystem(
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=SDK_ATTEMPTS),
        **options,
    )
