"""Caption stats (length, language, CLIP tokens, kind), rules over them, and the defaults that judge none."""
from __future__ import annotations

import random
import re
import string
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

import curate
from curate.config import DEFAULT_CONFIG, CurateConfig, Rule, load_config
from curate.filters.caption import CaptionFilter, caption_kind
from curate.filters.clip_bpe import CLIP_CONTEXT, clip_token_count
from curate.rules import decide, rule_violations
from curate.sample import build_sample
from curate.schema import GROUPS, SCHEMA, conform, field_kind
from curate.stats_stage import StatsStage
from photos import encode, photo

# Counts from open_clip 3.3.0's SimpleTokenizer: len(tokenizer.encode(text)) + 2 (start, end).
OPEN_CLIP_COUNTS = {
    "a cat on a rug": 7,
    "": 2,
    "A red bicycle leaning against a brick wall in the evening sun": 14,
    "IMG_1234.jpg": 10,
    "https://example.com/images/photo-01.jpg?w=640&h=480": 28,
    "Image may contain: 2 people, people smiling, outdoor": 13,
    "猫の写真を撮りました": 19,
    "Ça coûte 12,50 € — très cher!": 18,
    "&lt;b&gt;bold&amp;amp;&lt;/b&gt;": 10,
    "donâ€™t stop": 5,
    "emoji 🎉🎉 party 🥳": 6,
    "The QUICK brown fox's tail, isn't it? I'd've said 1234567890.": 28,
    "naïve café résumé Ωμέγα Привет мир": 30,
    "word " * 100: 102,
}


@pytest.mark.parametrize(("text", "count"), OPEN_CLIP_COUNTS.items())
def test_clip_token_count_is_open_clips(text, count):
    assert clip_token_count(text) == count


def test_clip_token_count_matches_open_clip_when_installed():
    tokenizer = pytest.importorskip("open_clip.tokenizer")  # the `models` extra
    simple = tokenizer.SimpleTokenizer()
    for text in [*OPEN_CLIP_COUNTS, "Tab\tand\nnewline", "<start_of_text>hello<end_of_text>", "x" * 300]:
        assert clip_token_count(text) == len(simple.encode(text)) + 2, text


def test_77_tokens_is_where_clip_starts_cutting():
    assert CLIP_CONTEXT == 77
    assert clip_token_count("photo " * 75) == 77  # fits exactly: 75 words + start + end
    assert clip_token_count("photo " * 76) == 78


@pytest.mark.parametrize("hostile", ["".join(random.Random(0).choices(string.ascii_lowercase, k=1 << 20)),
                                     "a." * (1 << 19), "http" * (1 << 18), "IMG_1 " * (1 << 17)])
def test_a_hostile_megabyte_caption_costs_a_fraction_of_a_second(hostile):
    CaptionFilter().measure("warm up the models")
    start = time.process_time()
    measured = CaptionFilter().measure(hostile)
    assert time.process_time() - start < 2.0  # CPU seconds; quadratic matching took minutes
    assert measured["stat_caption_chars"] == len(hostile) and measured["stat_caption_clip_tokens"] > CLIP_CONTEXT


@pytest.mark.parametrize(("caption", "kind"), [
    (None, "empty"), ("", "empty"), ("   ...  ", "empty"),
    ("https://example.com/a/b.jpg", "url"), ("www.example.com  https://cdn.example.com/x", "url"),
    ("IMG_1234.jpg", "filename"), ("DSC01234", "filename"), ("PXL_20230101_123456789.jpg", "filename"),
    ("Screenshot 2023-01-01 at 10.00.00", "filename"), ("3f2a9b7c1d0e", "filename"), ("20190412", "filename"),
    ("Image may contain: 2 people, smiling, outdoor", "boilerplate"), ("No description available.", "boilerplate"),
    ("Untitled", "boilerplate"), ("null", "boilerplate"),
    ("a cat on a rug", "text"), ("see https://example.com for the full story of this old barn", "text"),
    ("Screenshot of my garden in spring", "text"), ("photo of a dog", "text"), ("P 5 of the best beaches", "text"),
])
def test_caption_kinds(caption, kind):
    assert caption_kind(caption) == kind


def test_lengths_language_and_its_probability():
    f = CaptionFilter()
    en = f.measure("A red bicycle leaning against a brick wall in the evening sun")
    assert (en["stat_caption_chars"], en["stat_caption_words"], en["stat_caption_clip_tokens"]) == (61, 12, 14)
    assert en["stat_caption_lang"] == "en" and en["stat_caption_lang_prob"] > 0.95
    assert f.measure("ein rotes Fahrrad lehnt an einer Mauer in der Abendsonne")["stat_caption_lang"] == "de"
    assert f.measure("une belle maison au bord de la mer")["stat_caption_lang"] == "fr"
    assert f.measure("猫の写真を撮りました")["stat_caption_lang"] == "ja"
    for junk in (None, "", "IMG_1234.jpg", "https://example.com/a.jpg"):  # nothing to read a language in
        m = f.measure(junk)
        assert (m["stat_caption_lang"], m["stat_caption_lang_prob"]) == ("und", 0.0), junk
    empty = f.measure(None)
    assert (empty["stat_caption_chars"], empty["stat_caption_words"], empty["stat_caption_clip_tokens"]) == (0, 0, 2)


def test_caption_columns_are_stats_of_the_stats_group():
    for name in CaptionFilter.columns:
        assert field_kind(SCHEMA.field(name)) == "stat"
        assert name in GROUPS["stats"]


def test_stats_stage_measures_captions_of_decoded_rows_only():
    good = encode(photo("chelsea"))
    batch = pa.table({
        "image": pa.array([good, b"not an image", good], pa.binary()),
        "caption": pa.array(["a tabby cat looking at the camera", "a cat", None]),
        "reasons": pa.array([[], [], []], pa.list_(pa.string())),
    })
    measured = StatsStage()(batch)
    assert all(measured.schema.field(c).type == SCHEMA.field(c).type for c in CaptionFilter.columns)
    rows = measured.to_pylist()
    assert rows[0]["stat_caption_kind"] == "text" and rows[0]["stat_caption_words"] == 7
    assert rows[1]["reasons"] == ["unsupported_format"]
    assert all(rows[1][c] is None for c in CaptionFilter.columns)  # a failed row gets no stats at all
    assert rows[2]["stat_caption_kind"] == "empty" and rows[2]["stat_caption_chars"] == 0
    no_column = StatsStage()(batch.drop_columns(["caption"])).to_pylist()
    assert no_column[0]["stat_caption_kind"] == "empty"


def test_a_text_rule_passes_only_its_values_and_follows_on_null():
    table = pa.table({"stat_caption_lang": pa.array(["en", "de", None, "fr"])})
    rule = Rule(column="stat_caption_lang", values=["en", "de"], reason="caption_language")
    assert rule_violations(table, rule).tolist() == [False, False, True, True]
    lenient = rule.model_copy(update={"on_null": "pass"})
    assert rule_violations(table, lenient).tolist() == [False, False, False, True]


@pytest.mark.parametrize("rule", [
    {"column": "stat_caption_lang", "min": 1, "reason": "caption_language"},                    # text column, numeric bound
    {"column": "stat_caption_lang", "values": ["en"], "max": 2, "reason": "caption_language"},  # both forms
    {"column": "stat_caption_lang", "values": [], "reason": "caption_language"},                # rejects everything
    {"column": "stat_caption_words", "values": ["3"], "reason": "caption_length"},             # numeric column, values
    {"column": "stat_caption_kind", "values": ["text"], "reason": "not_a_reason"},
])
def test_malformed_text_rules_are_refused(rule):
    with pytest.raises(ValueError):
        Rule.model_validate(rule)


def _commented_caption_rules() -> list[dict]:
    """The caption rules default.yaml ships commented out (so that this checks they load)."""
    lines = re.findall(r"^\s*# - (\{column: stat_caption.*\})", DEFAULT_CONFIG.read_text(), re.MULTILINE)
    return [yaml.safe_load(line) for line in lines]


def test_default_config_judges_no_caption_and_the_shipped_caption_rules_load():
    assert not [r for r in load_config().rules if r.column.startswith("stat_caption")]
    assert CurateConfig().rules == load_config().rules
    shipped = _commented_caption_rules()
    assert {r["reason"] for r in shipped} == {"caption_not_text", "caption_length", "caption_language"}
    CurateConfig.model_validate({"rules": shipped})


JUNK = {"": "empty", "https://example.com/img/123.jpg": "url", "IMG_1234.jpg": "filename",
        "Image may contain: one person, outdoor": "boilerplate", "No description available": "boilerplate"}


def test_junk_captions_keep_their_images_by_default_and_the_caption_rules_reject_them(tmp_path):
    manifest = build_sample(tmp_path / "sample", "folder", seed=0)
    originals = sorted(e.key for e in manifest.entries if not e.expected)
    junk = dict(zip(originals, JUNK))  # the first few kept photos get a junk caption
    for key, caption in junk.items():
        Path(tmp_path / "sample" / f"{key}.txt").write_text(caption + "\n")
    out = tmp_path / "out"
    curate.run(str(tmp_path / "sample"), str(out))
    rows = {r["source_uri"].rsplit("/", 1)[-1].rsplit(".", 1)[0]: r for r in curate.open(str(out)).read(
        ["source_uri", "keep", "reasons", "stat_caption_kind", "stat_caption_lang"]).to_pylist()}
    assert sorted(k for k, r in rows.items() if r["keep"]) == originals  # captions judged nothing
    assert {k: rows[k]["stat_caption_kind"] for k in junk} == {k: JUNK[c] for k, c in junk.items()}
    assert all(rows[k]["stat_caption_kind"] == "text" for k in originals if k not in junk)

    config = {"rules": [*yaml.safe_load(DEFAULT_CONFIG.read_text())["rules"], *_commented_caption_rules()]}
    curate.retune(str(out), config)  # the stored stats, no decode
    retuned = {r["source_uri"].rsplit("/", 1)[-1].rsplit(".", 1)[0]: r for r in curate.open(str(out)).read(
        ["source_uri", "keep", "reasons"]).to_pylist()}
    kept = {k for k, r in retuned.items() if r["keep"]}
    assert kept >= set(originals) - set(junk) and not kept & set(junk)
    assert all("caption_not_text" in retuned[k]["reasons"] for k in junk)
    assert {rows[k]["stat_caption_kind"] for k in kept} == {"text"}  # a copy with a real caption takes a junk row's place
    assert kept - set(originals)


def test_decide_applies_a_language_rule_to_stored_stats():
    rows = [{"id": key, "source_uri": "u", "source_index": n, "reasons": [], "stat_caption_lang": lang,
             "width": 400, "height": 400, "stat_phash": n} for n, (key, lang) in enumerate(zip("abc", ["en", "de", "und"]))]
    table = conform(pa.Table.from_pylist(rows, schema=pa.schema([SCHEMA.field(n) for n in rows[0]])))
    config = CurateConfig.model_validate(
        {"rules": [{"column": "stat_caption_lang", "values": ["en", "de"], "reason": "caption_language"}],
         "dedup": {"near": False}})
    out = decide(table, config)
    assert out.column("reasons").to_pylist() == [[], [], ["caption_language"]]
