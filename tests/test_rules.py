"""Rules turn stored stats into keep flags and ordered reason codes; dedup sees only passing rows."""
from __future__ import annotations

import pyarrow as pa

from curate.config import CurateConfig, DedupConfig, Rule
from curate.rules import decide, rule_violations
from curate.schema import SCHEMA, conform


def _table(rows: list[dict]) -> pa.Table:
    base = {"source_uri": "u", "reasons": []}
    full = [{**base, "source_index": i, **r} for i, r in enumerate(rows)]
    names = list(dict.fromkeys(k for r in full for k in r))
    table = conform(pa.Table.from_pylist(full, schema=pa.schema([SCHEMA.field(n) for n in names])))
    return table.append_column("_partition", pa.array([0] * len(full), pa.int32()))


def test_bounds_are_inclusive_and_nulls_follow_the_rules_policy():
    table = _table([{"id": "a", "stat_clarity": 99.5}, {"id": "b", "stat_clarity": 100.0}, {"id": "c", "stat_clarity": None}])
    # A row never measured is not silently passed (on_null: reject, the default) unless the rule says so.
    assert rule_violations(table, Rule(column="stat_clarity", min=100, reason="blurry")).tolist() == [True, False, True]
    assert rule_violations(table, Rule(column="stat_clarity", max=99.5, reason="blurry")).tolist() == [False, True, True]
    passing = Rule(column="stat_clarity", min=100, reason="blurry", on_null="pass")
    assert rule_violations(table, passing).tolist() == [True, False, False]


def test_a_rule_on_a_group_never_measured_rejects_unless_it_lets_nulls_pass():
    table = _table([{"id": "a", "stat_clarity": 500.0, "width": 10, "height": 10}, {"id": "b", "reasons": ["truncated"]}])
    decided = decide(table, CurateConfig(rules=[Rule(column="level", min=5, reason="blurry")], dedup=DedupConfig(near=False)))
    assert decided.column("reasons").to_pylist() == [["blurry"], ["truncated"]]  # a decode failure gets no rule reason
    lenient = CurateConfig(rules=[Rule(column="level", min=5, reason="blurry", on_null="pass")], dedup=DedupConfig(near=False))
    assert decide(table, lenient).column("keep").to_pylist() == [True, False]


def _config(radius: int = 4) -> CurateConfig:
    return CurateConfig(
        rules=[
            Rule(column="stat_short_side", min=256, reason="too_small"),
            Rule(column="stat_clarity", min=100, reason="blurry"),
        ],
        dedup=DedupConfig(radius=radius),
    )


def test_reasons_follow_decode_then_rule_order_and_keep_is_their_absence():
    table = _table(
        [
            {"id": "a", "stat_short_side": 512, "stat_clarity": 500.0, "stat_phash": 0, "width": 512, "height": 512},
            {"id": "b", "stat_short_side": 100, "stat_clarity": 5.0, "stat_phash": 2**63, "width": 100, "height": 100},
            {"id": "c", "reasons": ["truncated"], "error_message": "half a file"},
            {"id": "d", "stat_short_side": 600, "stat_clarity": 900.0, "reasons": ["blurry", "near_duplicate"],
             "stat_phash": 2**64 - 1, "width": 600, "height": 600},
        ]
    )
    out = decide(table, _config())
    assert out.column("reasons").to_pylist() == [[], ["too_small", "blurry"], ["truncated"], []]
    assert out.column("keep").to_pylist() == [True, False, False, True]
    assert out.column("error_message").to_pylist()[2] == "half a file"


def test_a_blurry_copy_never_displaces_the_sharp_one():
    # Same hash; the blurry one is larger, but fails a rule, so the sharp one is kept.
    table = _table(
        [
            {"id": "sharp", "stat_short_side": 400, "stat_clarity": 500.0, "stat_phash": 12345, "width": 400, "height": 400},
            {"id": "blurry_big", "stat_short_side": 800, "stat_clarity": 10.0, "stat_phash": 12345, "width": 800, "height": 800},
            {"id": "resized", "stat_short_side": 300, "stat_clarity": 300.0, "stat_phash": 12345 ^ 0b111, "width": 300, "height": 300},
        ]
    )
    out = decide(table, _config(radius=4))
    assert out.column("reasons").to_pylist() == [[], ["blurry"], ["near_duplicate"]]
    assert out.column("dup_of").to_pylist() == [None, None, "sharp"]
    # A tighter radius over the same stored stats: no longer duplicates.
    out = decide(table, _config(radius=2))
    assert out.column("reasons").to_pylist() == [[], ["blurry"], []]


def test_exact_duplicates_keep_the_first_row():
    row = {"stat_short_side": 400, "stat_clarity": 500.0, "stat_phash": 7, "width": 400, "height": 400}
    table = _table([{"id": "same", **row}, {"id": "same", **row}, {"id": "other", **row, "stat_phash": 2**64 - 1}])
    out = decide(table, _config())
    assert out.column("reasons").to_pylist() == [[], ["exact_duplicate"], []]
    assert out.column("dup_of").to_pylist() == [None, "same", None]


def test_a_centre_crop_hash_within_the_radius_makes_a_near_duplicate():
    sharp = {"stat_short_side": 400, "stat_clarity": 500.0, "width": 400, "height": 400}
    full, crop = 0x0F0F_0F0F_0F0F_0F0F, 0x5555_5555_5555_5555
    table = _table(
        [
            {"id": "photo", **sharp, "stat_phash": full, "stat_phash_c95": full ^ 1, "stat_phash_c90": crop},
            # A cropped copy: its whole-frame hash is the original's centre-crop hash.
            {"id": "cropped", **sharp, "width": 380, "stat_phash": crop ^ 0b11, "stat_phash_c95": 0, "stat_phash_c90": 2**64 - 1},
            {"id": "other", **sharp, "stat_phash": full ^ (2**64 - 1), "stat_phash_c95": 0x3333_3333_3333_3333, "stat_phash_c90": 0xCCCC_CCCC_CCCC_CCCC},
        ]
    )
    out = decide(table, _config(radius=4))
    assert out.column("reasons").to_pylist() == [[], ["near_duplicate"], []]
    assert out.column("dup_of").to_pylist() == [None, "photo", None]
