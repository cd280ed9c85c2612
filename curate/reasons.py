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
    BAD_NAME = "bad_name"                # a file name that is not valid UTF-8 (shown with \xNN escapes): not read
    UNREADABLE_ENTRY = "unreadable_entry"  # a subfolder of the input that could not be listed (permissions)
    URL_NOT_FETCHED = "url_not_fetched"  # an http(s) URL instead of bytes or a file: download first (img2dataset)
    # Rules over stats.
    TOO_SMALL = "too_small"
    BAD_ASPECT = "bad_aspect"
    BLURRY = "blurry"
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    CAPTION_NOT_TEXT = "caption_not_text"  # stat_caption_kind: empty, only a URL, a file name, boilerplate
    CAPTION_LENGTH = "caption_length"    # caption characters, words or CLIP tokens outside the bounds
    CAPTION_LANGUAGE = "caption_language"  # stat_caption_lang not among the allowed, or too uncertain
    BORDER = "border"                    # stat_border: a solid flat-colour frame or letterbox bars
    COLLAGE = "collage"                  # stat_collage: a grid of several pictures
    # Model stages (curate.models): rules over the models group.
    TEXT_HEAVY = "text_heavy"            # stat_ocr_area: text covers too much of the image
    FACES = "faces"                      # stat_face_count / stat_face_area outside the bounds
    NSFW = "nsfw"                        # stat_nsfw / stat_clip_nsfw above the bound
    LOW_AESTHETIC = "low_aesthetic"      # stat_aesthetic (LAION predictor) below the bound
    WATERMARK = "watermark"              # stat_watermark above the bound
    # Duplicates.
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"  # CLIP embeddings within the cosine threshold (SemDeDup)


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
        Reason.BAD_NAME,
        Reason.UNREADABLE_ENTRY,
        Reason.URL_NOT_FETCHED,
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
    Reason.BAD_NAME: "file name is not valid UTF-8; rename the file to read it",
    Reason.UNREADABLE_ENTRY: "a subfolder that could not be listed (permissions); its files were not read",
    Reason.URL_NOT_FETCHED: "an http(s) URL, not downloaded: fetch the images first (img2dataset), then curate those",
    Reason.TOO_SMALL: "below the minimum resolution",
    Reason.BAD_ASPECT: "aspect ratio outside the allowed range",
    Reason.BLURRY: "contrast-free clarity (Laplacian over gradient energy) below threshold",
    Reason.OVEREXPOSED: "washed out: clipping that cuts through detail, or no darks left",
    Reason.UNDEREXPOSED: "no highlights: 99th-percentile grey below threshold",
    Reason.CAPTION_NOT_TEXT: "caption is empty, only a URL, a file name or boilerplate (\"image may contain\")",
    Reason.CAPTION_LENGTH: "caption length (characters, words or CLIP tokens) outside the allowed range",
    Reason.CAPTION_LANGUAGE: "caption language not among the allowed ones, or detected with too little confidence",
    Reason.BORDER: "a solid flat-colour frame (or letterbox / pillarbox bars) around the picture",
    Reason.COLLAGE: "a collage: a grid of several pictures",
    Reason.TEXT_HEAVY: "text (OCR boxes) covers more of the image than allowed",
    Reason.FACES: "face count or largest-face area outside the allowed range",
    Reason.NSFW: "NSFW classifier score above the bound",
    Reason.LOW_AESTHETIC: "LAION aesthetic score (on the CLIP embedding) below the bound",
    Reason.WATERMARK: "watermark classifier score above the bound",
    Reason.EXACT_DUPLICATE: "same bytes as a kept row",
    Reason.NEAR_DUPLICATE: "perceptual hash (whole, crops, mirror) near a kept row, confirmed by dHash and colour",
    Reason.SEMANTIC_DUPLICATE: "CLIP embedding within the cosine threshold of a kept row (same k-means cluster)",
}
