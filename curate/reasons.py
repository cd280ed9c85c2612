"""The fixed list of reason codes a row can carry in ``reasons``.

Read/decode failures are recorded by the CPU stats stage; rule rejections by
``curate.rules``; duplicates by ``curate.dedup``. A row with no reason is kept.
"""
from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # The bytes could not be obtained or are not an image we accept.
    READ_ERROR = "read_error"              # file missing / unreadable / tar member missing
    EMPTY_FILE = "empty_file"              # zero bytes
    UNSUPPORTED_FORMAT = "unsupported_format"  # not an image, or a format outside the allow-list
    BAD_HEADER = "bad_header"              # header unparseable or impossible (zero/negative size)
    TOO_MANY_PIXELS = "too_many_pixels"    # over the pixel budget (decompression bomb): never decoded
    TRUNCATED = "truncated"                # image data ends early
    CORRUPT = "corrupt"                    # decoder error (bad CRC, broken stream, ...)
    # -- new read/decode reasons: one line each, appended below this marker (add to DECODE_FAILURES and DESCRIPTIONS too) --
    TOO_LARGE = "too_large"              # file or value over input.max_file_bytes: never read past the budget
    PATH_NOT_ALLOWED = "path_not_allowed"  # reference or symlink outside the input and input.allowed_roots
    TOO_COMPLEX = "too_complex"          # decode work over budget (JPEG scans, decode time): not decoded
    STAGE_ERROR = "stage_error"          # a stage raised on this row (on_error: row); the exception in error_message
    # Rules over stats.
    TOO_SMALL = "too_small"
    BAD_ASPECT = "bad_aspect"
    BLURRY = "blurry"
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    # Duplicates.
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"


DECODE_FAILURES = frozenset(
    {
        Reason.READ_ERROR,
        Reason.EMPTY_FILE,
        Reason.UNSUPPORTED_FORMAT,
        Reason.BAD_HEADER,
        Reason.TOO_MANY_PIXELS,
        Reason.TRUNCATED,
        Reason.CORRUPT,
        Reason.TOO_LARGE,
        Reason.PATH_NOT_ALLOWED,
        Reason.TOO_COMPLEX,
        Reason.STAGE_ERROR,
    }
)

DESCRIPTIONS = {
    Reason.READ_ERROR: "source could not be read",
    Reason.EMPTY_FILE: "zero-byte file",
    Reason.UNSUPPORTED_FORMAT: "not an image in the allowed formats",
    Reason.BAD_HEADER: "image header unreadable or impossible",
    Reason.TOO_MANY_PIXELS: "over the pixel budget (decompression bomb); not decoded",
    Reason.TRUNCATED: "image data truncated",
    Reason.CORRUPT: "image data corrupt",
    Reason.TOO_LARGE: "file over the byte budget (input.max_file_bytes); not read",
    Reason.PATH_NOT_ALLOWED: "points outside the input and input.allowed_roots; not read",
    Reason.TOO_COMPLEX: "decoding would take too much work (JPEG scans, time budget); not decoded",
    Reason.STAGE_ERROR: "a stage raised on this row",
    Reason.TOO_SMALL: "below the minimum resolution",
    Reason.BAD_ASPECT: "aspect ratio outside the allowed range",
    Reason.BLURRY: "clarity (variance of the Laplacian) below threshold",
    Reason.OVEREXPOSED: "too many over-exposed pixels",
    Reason.UNDEREXPOSED: "no highlights: 99th-percentile grey below threshold",
    Reason.EXACT_DUPLICATE: "same bytes as a kept row",
    Reason.NEAR_DUPLICATE: "perceptual hash within the dedup radius of a kept row",
}
