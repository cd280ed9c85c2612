"""The caption report's numbers: what one captions version of an output holds, counted, no HTML.

Contract: ``gather(output, version, samples, seed) -> Facts`` reads ``output`` (a
``curate.open`` result) with ``versions={"captions": name}`` (``version``, default the current
captions version; an output without a captions group or without that version is a one-line
``OutputError``) in two passes:
- every row, ``TALLY_COLUMNS`` only, into a ``Tally``: rows, kept, ``caption_status`` counts,
  ``caption_source`` of kept rows, fallbacks (kept, on the original caption because the
  synthetic failed or came back empty), kept rows without an original caption on the synthetic
  one, kept rows with no caption at all, the rows the mix draws among (kept, status ``ok``,
  with an original caption) and how many of them drew the synthetic one, the languages of
  ``caption_synthetic`` (status ``ok``) and of ``caption_synthetic_2`` (when present), and
  ``caption_error`` messages;
- then the kept rows only: at most ``HISTOGRAM_ROWS`` for the token histograms and
  ``samples`` for the samples (``SAMPLE_COLUMNS``), each a ``numpy.random.default_rng(seed)``
  draw without replacement, in ``row_key`` order (all kept rows when there are fewer).
``token_lengths(rows, budget_encoder, budget)`` counts the non-empty original and synthetic
captions of ``rows`` in text tokens per encoder of ``caption.config.ENCODER_BUDGETS``
(``caption.tokens.count``), with the text room of the encoder's sequence
(``tokens.budget_text_tokens``) and, for ``budget_encoder``, of a ``budget`` other than it;
``row_tokens(row)`` does the same for one sample row. ``setting(settings, *dotted)`` reads a
version's manifest ``settings``; ``Facts.configured_ratio`` is ``mix.ratio`` (or ``mix_ratio``)
and ``Facts.budget`` the run's ``budget.encoder`` and ``budget.limit`` (or ``budget.tokens``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from caption import tokens
from caption.config import ENCODER_BUDGETS
from curate.fetch import FETCH_COLUMNS
from curate.layout import OutputError
from curate.schema import make_row_key

GROUP = "captions"
HISTOGRAM_ROWS = 5000  # kept rows whose token counts are histogrammed (a seeded sample beyond)
TALLY_COLUMNS = ["row_key", "keep", "caption", "caption_source", "caption_status", "caption_error",
                 "caption_synthetic_lang", "caption_synthetic_2", "caption_synthetic_2_lang"]
TEXT_COLUMNS = ["row_key", "caption", "caption_synthetic"]
SAMPLE_COLUMNS = list(dict.fromkeys([
    *FETCH_COLUMNS, "width", "height", "keep", "reasons", "caption", "caption_synthetic", "caption_synthetic_model",
    "caption_synthetic_prompt", "caption_synthetic_lang", "caption_synthetic_tokens", "caption_synthetic_seconds", "caption_synthetic_2",
    "caption_synthetic_2_prompt", "caption_synthetic_2_lang", "caption_source", "caption_status", "caption_error"]))


def is_empty(text: str | None) -> bool:
    return text is None or not text.strip()


@dataclass
class Tally:
    """Counts over every row of the output (pass one)."""
    rows: int = 0
    kept: int = 0
    status: Counter = field(default_factory=Counter)
    source_kept: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    synthetic_without_original: int = 0
    no_caption: int = 0
    eligible: int = 0  # kept, captioned, with an original caption: the rows the mix draws among
    eligible_synthetic: int = 0
    langs: Counter = field(default_factory=Counter)
    langs_2: Counter = field(default_factory=Counter)
    second: int = 0
    errors: Counter = field(default_factory=Counter)
    kept_keys: list[np.ndarray] = field(default_factory=list)

    def add(self, t: pa.Table) -> None:
        self.rows += t.num_rows
        keep = pc.fill_null(t.column("keep"), False).to_numpy(zero_copy_only=False)
        self.kept += int(keep.sum())
        self.kept_keys.append(t.column("row_key").to_numpy()[keep])
        cols = {c: t.column(c).to_pylist() for c in TALLY_COLUMNS[2:]}
        for i, kept in enumerate(keep):
            status, source = cols["caption_status"][i], cols["caption_source"][i]
            self.status[status or "(none)"] += 1
            if cols["caption_error"][i]:
                self.errors[cols["caption_error"][i]] += 1
            if status == "ok":
                self.langs[cols["caption_synthetic_lang"][i] or "(none)"] += 1
            if not is_empty(cols["caption_synthetic_2"][i]):
                self.second += 1
                self.langs_2[cols["caption_synthetic_2_lang"][i] or "(none)"] += 1
            if not kept:
                continue
            self.source_kept[source or "(none)"] += 1
            no_original = is_empty(cols["caption"][i])
            if source == "original" and status in ("caption_failed", "caption_empty"):
                self.fallbacks += 1
            if source == "synthetic" and no_original:
                self.synthetic_without_original += 1
            if no_original and source != "synthetic":
                self.no_caption += 1
            if status == "ok" and not no_original:
                self.eligible += 1
                self.eligible_synthetic += source == "synthetic"

    def keys(self) -> np.ndarray:
        return np.sort(np.concatenate(self.kept_keys)) if self.kept_keys else np.zeros(0, np.int64)


@dataclass(frozen=True)
class EncoderLengths:
    """Text-token counts of the original and the synthetic captions under one encoder."""
    encoder: str
    exact: bool
    limit: int  # the encoder's sequence, special tokens included
    room: int  # the text tokens that fit in it
    budget: tuple[float, int] | None  # the run's other budget of this encoder and its text room, if any
    original: np.ndarray
    synthetic: np.ndarray


@dataclass
class Facts:
    """What the report shows, read from the output."""
    uri: str
    version: str
    entry: dict  # the version's manifest entry (stage, created, settings)
    versions: list[str]  # every captions version, sorted
    current: str | None  # the output's current captions version
    settings: dict
    tally: Tally
    histogram_rows: list[dict]  # TEXT_COLUMNS of the kept rows drawn for the histograms
    sampled: bool  # whether histogram_rows is a sample of the kept rows rather than all of them
    shown: list[dict]  # SAMPLE_COLUMNS of the kept rows drawn as samples

    @property
    def configured_ratio(self) -> float | None:
        return number(setting(self.settings, "mix.ratio", "mix_ratio"))

    @property
    def budget(self) -> tuple[object, float | None]:
        return setting(self.settings, "budget.encoder"), number(setting(self.settings, "budget.limit", "budget.tokens"))


def setting(settings: dict, *names: str) -> object:
    """The first of ``names`` (dotted paths) found in ``settings``, else None."""
    for name in names:
        value: object = settings
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def token_lengths(rows: list[dict], budget_encoder: object = None, budget: float | None = None) -> list[EncoderLengths]:
    """Per encoder, the lengths of ``rows``' captions; ``budget`` is the run's limit for ``budget_encoder``."""
    originals = [r["caption"] for r in rows if not is_empty(r["caption"])]
    synthetics = [r["caption_synthetic"] for r in rows if not is_empty(r["caption_synthetic"])]
    out = []
    for encoder, limit in ENCODER_BUDGETS.items():
        def lengths(texts: list[str]) -> np.ndarray:
            return np.array([tokens.count(t, encoder) for t in texts], dtype=np.float64)
        other = (budget, tokens.budget_text_tokens(encoder, int(budget))) if (
            budget_encoder == encoder and budget is not None and budget != limit) else None
        out.append(EncoderLengths(encoder, bool(tokens.EXACT.get(encoder, False)), limit,
                                  tokens.budget_text_tokens(encoder, limit), other, lengths(originals), lengths(synthetics)))
    return out


def row_tokens(row: dict) -> list[tuple[str, bool, int | None, int | None]]:
    """(encoder, exact, original's count, synthetic's count) per encoder; None for no caption."""
    def count(text: str | None, encoder: str) -> int | None:
        return None if is_empty(text) else tokens.count(text, encoder)
    return [(encoder, bool(tokens.EXACT.get(encoder, False)), count(row.get("caption"), encoder),
             count(row.get("caption_synthetic"), encoder)) for encoder in ENCODER_BUDGETS]


def choose(keys: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n <= 0:
        return keys[:0]
    if n >= keys.size:
        return keys
    return np.sort(np.random.default_rng(seed).choice(keys, size=n, replace=False))


def read_rows(output, wanted: np.ndarray, columns: list[str], versions: dict) -> list[dict]:
    """``columns`` of the rows whose ``row_key`` is in ``wanted``, reading only the units holding one."""
    rows = []
    for unit in output.units:
        lo = make_row_key(unit.partition, unit.start)
        inside = wanted[(wanted >= lo) & (wanted < lo + unit.rows)]
        if inside.size:
            t = output.read_unit(unit, columns, versions=versions)
            rows.extend(t.filter(pc.is_in(t.column("row_key"), pa.array(inside, pa.int64()))).to_pylist())
    return rows


def version_of(output, version: str | None) -> tuple[str, dict]:
    versions = output.manifest["groups"].get(GROUP) or {}
    if not versions:
        raise OutputError(f"{output.uri} has no captions group: run `refinery caption run` on it first")
    name = version if version is not None else output.groups.get(GROUP)
    if name not in versions:
        raise OutputError(f"{output.uri} has no captions version {name!r}; it has {sorted(versions)}")
    return name, versions[name]


def gather(output, version: str | None, samples: int, seed: int) -> Facts:
    name, entry = version_of(output, version)
    versions = {GROUP: name}
    tally = Tally()
    for table in output.iter_tables(TALLY_COLUMNS, versions=versions):
        tally.add(table)
    kept = tally.keys()
    hist_keys = choose(kept, HISTOGRAM_ROWS, seed)
    return Facts(uri=output.uri, version=name, entry=entry, versions=sorted(output.manifest["groups"][GROUP]),
                 current=output.groups.get(GROUP),
                 settings=entry.get("settings") if isinstance(entry.get("settings"), dict) else {}, tally=tally,
                 histogram_rows=read_rows(output, hist_keys, TEXT_COLUMNS, versions), sampled=hist_keys.size < kept.size,
                 shown=read_rows(output, choose(kept, samples, seed), SAMPLE_COLUMNS, versions))
