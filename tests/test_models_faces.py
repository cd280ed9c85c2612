"""Face count (curate.models.faces): real portraits, photos without people, tiles of N faces,
box geometry, the check() lines, and the yunet engine's plumbing on a tiny hand-written ONNX.

MTCNN runs with the weights inside the facenet-pytorch wheel, on one thread. Tiles stay within
the limits measured in bench/eval_faces.md (N <= 6, faces of 70+ px; misses start near 20 px).
"""
from __future__ import annotations

import numpy as np
import pytest

from curate.models import registry
from curate.models.base import ModelEnv, ModelUnavailable
from curate.models.config import FacesConfig, ModelsConfig
from curate.models.faces import COLUMNS, INSTALL, build, check
from curate.sample.faces import FACES, NO_PEOPLE, face_crop, filler, tile
from curate.sample.photos import load_photo
from tiny_onnx import tiny_yunet

import facenet_pytorch  # noqa: E402,F401 -- installed by make setup (--no-deps)


@pytest.fixture(scope="module")
def mtcnn():
    model = build(FacesConfig())
    assert model.detector is None  # build() loads nothing
    model.setup(ModelEnv("cpu", 1))
    return model


def rgb(name: str) -> np.ndarray:
    return np.asarray(load_photo(name).convert("RGB"))


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def as_tuple(b: dict) -> tuple:
    return (b["x0"], b["y0"], b["x1"], b["y1"])


def assert_boxes_on(found: list[dict], truth: list[tuple]) -> None:
    """Every face has its own detection with IoU >= 0.4, and every box is inside the frame."""
    assert len(found) == len(truth)
    for b in found:
        assert 0.0 <= b["x0"] < b["x1"] <= 1.0 and 0.0 <= b["y0"] < b["y1"] <= 1.0 and 0.0 < b["score"] <= 1.0
    left = [as_tuple(b) for b in found]
    for t in truth:
        scores = [iou(t, f) for f in left]
        assert max(scores) >= 0.4, (t, left)
        left.pop(int(np.argmax(scores)))


def test_portraits_one_face_and_people_free_photos_none(mtcnn):
    names = [*FACES, *NO_PEOPLE]
    images = [rgb(n) for n in names]  # astronaut and camera are both 512x512: they run as one batch
    out = mtcnn.measure(images, {})
    assert set(out) == set(COLUMNS)
    for i, name in enumerate(names):
        h, w = images[i].shape[:2]
        if name in FACES:
            x0, y0, x1, y1 = FACES[name]
            assert out["stat_face_count"][i] == 1, name
            assert_boxes_on(out["face_boxes"][i], [(x0 / w, y0 / h, x1 / w, y1 / h)])
            largest = out["face_boxes"][i][0]
            side_x, side_y = largest["x1"] - largest["x0"], largest["y1"] - largest["y0"]
            assert out["stat_face_area"][i] == pytest.approx(side_x * side_y)
        else:
            assert (out["stat_face_count"][i], out["stat_face_area"][i], out["face_boxes"][i]) == (0, 0.0, []), name
    single = mtcnn.measure([images[0]], {})  # one image alone gives what the batch gave
    assert single["stat_face_count"] == [1]
    assert as_tuple(single["face_boxes"][0][0]) == pytest.approx(as_tuple(out["face_boxes"][0][0]), abs=1e-3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_tiles_of_n_faces(mtcnn, n):
    rng = np.random.default_rng(n)
    names = list(FACES)
    faces = [face_crop(names[k % 3], mirror=k % 2 == 1) for k in range(n)]
    cells = [*faces, (filler(NO_PEOPLE[n % 5], rng, 160), None)]
    order = rng.permutation(len(cells))
    img, boxes = tile([cells[k] for k in order], cols=min(3, len(cells)), side=160)
    out = mtcnn.measure([np.asarray(img)], {})
    assert out["stat_face_count"] == [n]
    assert_boxes_on(out["face_boxes"][0], boxes)


def test_face_area_grows_with_a_tighter_crop(mtcnn):
    full = rgb("astronaut")
    x0, y0, x1, y1 = FACES["astronaut"]
    pad = 40
    tight = np.ascontiguousarray(full[y0 - pad : y1 + pad, x0 - pad : x1 + pad])
    out = mtcnn.measure([full, tight], {})
    assert out["stat_face_count"] == [1, 1]
    area_full, area_tight = out["stat_face_area"]
    truth_full = (x1 - x0) * (y1 - y0) / full.shape[0] / full.shape[1]
    assert 0.5 * truth_full < area_full < 2 * truth_full
    assert area_tight > 3 * area_full


def test_odd_images_and_tiny_ones(mtcnn):
    grey = np.zeros((64, 64), np.uint8)
    floats = np.zeros((64, 64, 3), np.float32)
    tiny = np.full((12, 12, 3), 128, np.uint8)  # shorter than min_face: no pyramid level, no face
    out = mtcnn.measure([grey, floats, tiny, np.zeros((0, 5, 3), np.uint8)], {})
    assert out["stat_face_count"] == [None, None, 0, None]
    assert out["stat_face_area"] == [None, None, 0.0, None]
    with pytest.raises(RuntimeError):
        build(FacesConfig()).measure([tiny], {})


def test_check_lines(tmp_path, monkeypatch):
    assert check(FacesConfig()) is None
    problem = check(FacesConfig(engine="yunet"))
    assert problem is not None and "\n" not in problem and problem.startswith("models.faces.model:")
    missing = check(FacesConfig(engine="yunet", model=str(tmp_path / "nope.onnx")))
    assert missing.startswith("models.faces.model:") and "nope.onnx" in missing
    cfg = ModelsConfig(**{name: {"enabled": False} for name in registry.MODELS if name != "faces"},
                       faces={"enabled": True, "engine": "yunet"})
    with pytest.raises(ModelUnavailable, match=r"models\.faces\.model"):
        registry.resolve(cfg)
    assert registry.resolve(cfg.model_copy(update={"faces": FacesConfig(engine="yunet")})).off["faces"] == problem
    import curate.models.base as base

    real = base.importlib.util.find_spec
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda m, *a: None if m == "facenet_pytorch" else real(m, *a))
    no_package = check(FacesConfig())
    assert no_package.startswith("models.faces:") and "facenet_pytorch" in no_package
    assert "--no-deps facenet-pytorch" in no_package
    assert "--no-deps" in INSTALL


def test_yunet_missing_file_fails_at_setup(tmp_path):
    model = build(FacesConfig(engine="yunet", model=str(tmp_path / "gone.onnx")))
    with pytest.raises(FileNotFoundError, match=r"models\.faces\.model"):
        model.setup(ModelEnv("cpu", 1))


def test_yunet_plumbing_on_a_tiny_model(tmp_path):
    import cv2  # noqa: F401 -- pulled by rapidocr_onnxruntime
    path = tmp_path / "tiny_yunet.onnx"
    path.write_bytes(tiny_yunet())
    model = build(FacesConfig(engine="yunet", model=str(path), min_score=0.5, min_face=8))
    model.setup(ModelEnv("cpu", 1))
    wide = np.zeros((64, 100, 3), np.uint8)
    wide[32:64, 64:96] = 255  # one bright 32-px cell: the tiny model's one "face"
    square = np.zeros((64, 64, 3), np.uint8)
    square[0:32, 0:32] = 255
    out = model.measure([wide, square, np.zeros((64, 64, 3), np.uint8)], {})
    assert out["stat_face_count"] == [1, 1, 0]
    assert as_tuple(out["face_boxes"][0][0]) == pytest.approx((0.64, 0.5, 0.96, 1.0), abs=1e-6)
    assert as_tuple(out["face_boxes"][1][0]) == pytest.approx((0.0, 0.0, 0.5, 0.5), abs=1e-6)
    assert out["face_boxes"][0][0]["score"] == pytest.approx(1.0)
    assert out["stat_face_area"][:2] == pytest.approx([0.32 * 0.5, 0.25])
    dropped = build(FacesConfig(engine="yunet", model=str(path), min_score=0.5, min_face=40))
    dropped.setup(ModelEnv("cpu", 1))
    assert dropped.measure([wide], {})["stat_face_count"] == [0]  # 32-px box below min_face
