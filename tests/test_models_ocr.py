"""OCR model stage (curate.models.ocr) on rendered English and Chinese lines.

The Chinese renders need a CJK font from Debian's packages (``make fonts`` installs
fonts-wqy-microhei; ``.ci/run`` does too): without one the Chinese test fails, saying so. The
character error rate (edit distance / reference length, whitespace collapsed) is printed
(``pytest -s``) and is in the assert message.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from curate.models import ocr
from curate.models.base import ModelEnv, missing_packages
from curate.models.config import OcrConfig
from curate.schema import MODEL_FIELDS
from curate.sample.ocr_text import cer, norm
from photos import photo

import rapidocr_onnxruntime  # noqa: E402,F401 -- installed by make setup

EN = ["The quick brown fox jumps", "over the lazy dog 1234", "Pack my box with five",
      "dozen liquor jugs today", "Sphinx of black quartz", "judge my vow at 9 pm"]
ZH = ["春天来了花都开了", "我们一起去公园散步", "今天的天气非常好", "这家饭店的菜很好吃", "欢迎来到北京"]
LATIN_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


def cjk_font() -> str | None:
    if os.path.exists(CJK_FONT):
        return CJK_FONT
    if shutil.which("fc-list"):
        files = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True).stdout.split()
        return files[0].rstrip(":") if files else None
    return None


def render(lines, font_file, size=28, background: str | None = None) -> np.ndarray:
    """``lines`` in black at ``size`` px from the top left of a 512² frame: white, or a photo (white outline)."""
    img = Image.new("RGB", (512, 512), "white") if background is None else ImageOps.fit(photo(background), (512, 512))
    draw, font = ImageDraw.Draw(img), ImageFont.truetype(str(font_file), size)
    for i, line in enumerate(lines):
        draw.text((24, 30 + i * int(size * 2.1)), line, font=font, fill="black",
                  stroke_width=0 if background is None else 3, stroke_fill="white")
    return np.asarray(img)


@pytest.fixture(scope="module")
def model():
    m = ocr.build(OcrConfig())
    m.setup(ModelEnv("cpu", 1))
    return m


def _cer_check(model, lines, font, label):
    images = [render(lines, font), render(lines[:3], font, background="china")]
    refs = [" ".join(lines), " ".join(lines[:3])]
    got = model.measure(images, {})
    rate = cer(refs, got["ocr_text"])
    print(f"\nOCR CER {label}: {rate:.3%} over {sum(map(len, refs))} chars; read {got['ocr_text']!r}")
    assert rate <= 0.10, f"{label} CER {rate:.3%} > 10%: read {got['ocr_text']!r}"


def test_english_lines_are_read(model):
    _cer_check(model, EN, LATIN_FONT, "English")


def test_chinese_lines_are_read(model):
    font = cjk_font()
    if font is None:  # make test installs it (make fonts): its absence is a broken set-up, not a pass
        pytest.fail(f"no CJK font ({CJK_FONT}): run `make fonts` (Debian fonts-wqy-microhei) to test Chinese OCR")
    _cer_check(model, ZH, font, "Chinese")


def test_area_grows_with_text_and_text_free_photos_are_zero(model):
    got = model.measure([render(EN[:n], LATIN_FONT) for n in (1, 3, 6)] + [np.asarray(photo("chelsea"))], {})
    area = got["stat_ocr_area"]
    assert got["stat_ocr_boxes"][:3] == [1, 3, 6], got["ocr_text"]
    assert 0 < area[0] < area[1] < area[2] and area[2] > 4 * area[0], area
    assert got["stat_ocr_boxes"][3] == 0 and area[3] < 0.005 and got["ocr_boxes"][3] == []
    assert got["stat_ocr_confidence"][3] is None and got["ocr_text"][3] == ""


def test_column_shapes_and_types_fit_the_schema(model):
    images = [render(EN[:2], LATIN_FONT), np.asarray(photo("astronaut").resize((400, 400))), np.zeros((1, 1, 3), np.uint8)]
    got = model.measure(images, {})
    assert sorted(got) == sorted(ocr.COLUMNS) and all(len(v) == 3 for v in got.values())
    assert isinstance(got["stat_ocr_boxes"][0], int) and isinstance(got["stat_ocr_area"][0], float)
    assert 0.9 < got["stat_ocr_confidence"][0] <= 1 and got["ocr_text"][0].count("\n") == 1
    for b in got["ocr_boxes"][0]:
        assert set(b) == {"x0", "y0", "x1", "y1", "score"} and 0 <= b["x0"] < b["x1"] <= 1 and 0 <= b["y0"] < b["y1"] <= 1
    assert got["stat_ocr_boxes"][1] == 0 and got["stat_ocr_area"][1] == 0.0
    assert all(got[c][2] is None for c in ocr.COLUMNS)  # a 1x1 image: not measured
    types = {f.name: f.type for f in MODEL_FIELDS}
    for c in ocr.COLUMNS:
        assert pa.array(got[c], type=types[c]).null_count == (1 if c != "stat_ocr_confidence" else 2)


def test_recognition_runs_only_where_detection_found_text(model, monkeypatch):
    calls = []
    real = model._engine.text_rec.__call__
    monkeypatch.setattr(model._engine, "text_rec", lambda imgs, *a: calls.append(len(imgs)) or real(imgs, *a))
    model.measure([np.asarray(photo("chelsea")), np.full((300, 300, 3), 255, np.uint8)], {})
    assert calls == []
    model.measure([render(EN[:2], LATIN_FONT)], {})
    assert calls == [2]


def test_check_messages(tmp_path):
    assert ocr.check(OcrConfig()) is None
    missing = ocr.check(OcrConfig(model=str(tmp_path / "nope")))
    assert missing.startswith("models.ocr.model:") and "\n" not in missing and "nope" in missing
    empty = ocr.check(OcrConfig(model=str(tmp_path)))
    assert "models.ocr.model" in empty and "*det*.onnx" in empty and "\n" not in empty
    if missing_packages("paddleocr", "paddle"):
        line = ocr.check(OcrConfig(engine="paddleocr"))
        assert "models.ocr.engine=paddleocr" in line and "pip install paddleocr paddlepaddle" in line and "\n" not in line


def test_model_folder_overrides_the_wheel(tmp_path):
    wheel = Path(rapidocr_onnxruntime.__file__).parent / "models"
    assert ocr.check(OcrConfig(model=str(wheel))) is None
    own = ocr.build(OcrConfig(model=str(wheel)))
    own.setup(ModelEnv("cuda", 1))  # asks for the CUDA provider; CPU-only ONNX Runtime falls back
    import onnxruntime

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert own.providers[0] == ("CUDAExecutionProvider" if cuda else "CPUExecutionProvider"), own.providers
    assert norm(own.measure([render(EN[:2], LATIN_FONT)], {})["ocr_text"][0]) == norm(" ".join(EN[:2]))
    # The folder's files are the ones loaded: a broken detector there fails at setup.
    for f in wheel.glob("*.onnx"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "ch_PP-OCRv4_det_infer.onnx").write_bytes(b"not a model")
    assert ocr.check(OcrConfig(model=str(tmp_path))) is None
    with pytest.raises(Exception):
        ocr.build(OcrConfig(model=str(tmp_path))).setup(ModelEnv("cpu", 1))
