"""Face count: how many faces an image shows, and how much of it the largest one fills.

Columns (``models`` group): ``stat_face_count`` (faces with score >= ``min_score``),
``stat_face_area`` (the largest face box's area / the image's area, boxes clipped to the
frame; 0.0 when there is no face) and ``face_boxes`` (``base.box`` dicts, fractions of the
frame, largest first, each with its score). A face-free image is measured: 0, 0.0, [].
An image that is not a non-empty uint8 ``(h, w, 3)`` array gets None in every column.

Engines (``models.faces.engine``), each a ``Detector`` (``detect(rgb)`` -> faces as
``(x0, y0, x1, y1, score)`` in pixels of that array; ``detect_many(images)``: the same for a
list, batched where the engine can):
- ``mtcnn`` (default): facenet-pytorch's MTCNN (P/R/O-Net cascade), weights inside its wheel
  (``facenet_pytorch/data/*.pt``, never downloaded); ``keep_all``, on ``env.torch_device``,
  image pyramid down to faces of ``min_face`` pixels; images of the same size run as one
  batch. Its metadata pins torch<2.3 and numpy<2; installed ``--no-deps`` it runs on torch
  2.14 / numpy 2 (``INSTALL``). An image whose short side is below ``min_face`` has no
  pyramid level: 0 faces, without running the net.
- ``yunet``: OpenCV's ``cv2.FaceDetectorYN`` over ``models.faces.model`` (a
  face_detection_yunet ONNX file: input ``input`` 1x3xHxW BGR, outputs ``cls_/obj_/bbox_/kps_``
  at strides 8/16/32), input size set per image, OpenCV's NMS; faces with a short side below
  ``min_face`` dropped. No wheel ships its weights.
A stronger detector (RetinaFace / SCRFD ONNX) is one more class with ``detect`` /
``detect_many``, one more ``engine`` value and a line in ``_detector``.

Measured on the wheels' photos and tiles of their faces: ``bench/eval_faces.md``.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from curate.models.base import EXTRA, ModelEnv, box, need_packages, need_path, usable
from curate.models.config import FacesConfig

COLUMNS = ["stat_face_count", "stat_face_area", "face_boxes"]
FACENET = "facenet-pytorch==2.6.0"
INSTALL = f"pip install 'refinery[{EXTRA}]' && pip install --no-deps {FACENET}"
YUNET_INSTALL = "opencv-python"
SETTING = "models.faces"

Face = tuple[float, float, float, float, float]  # x0, y0, x1, y1 (pixels), score


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...

    def detect_many(self, images: list[np.ndarray]) -> list[list[Face]]: ...


def check(cfg: FacesConfig) -> str | None:
    """None when the engine's package (and, for yunet, its model file) is here; no loading."""
    if cfg.engine == "yunet":
        return (need_packages(SETTING, ("cv2",), YUNET_INSTALL)
                or need_path(f"{SETTING}.model", cfg.model, "YuNet ONNX file (face_detection_yunet_*.onnx)"))
    return need_packages(SETTING, ("torch", "facenet_pytorch"), f"'refinery[{EXTRA}]' && pip install --no-deps {FACENET}")


def build(cfg: FacesConfig) -> "FacesModel":
    return FacesModel(cfg)


class MtcnnDetector:
    def __init__(self, min_face: int, min_score: float, device: str):
        from facenet_pytorch import MTCNN

        self.min_face, self.min_score = min_face, min_score
        self.net = MTCNN(keep_all=True, min_face_size=min_face, post_process=False, select_largest=False, device=device)
        self.net.eval()

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return self.detect_many([rgb])[0]

    def detect_many(self, images: list[np.ndarray]) -> list[list[Face]]:
        out: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple, list[int]] = {}
        for i, rgb in enumerate(images):
            if min(rgb.shape[:2]) >= self.min_face:  # else no pyramid level: no face this size fits
                by_shape.setdefault(rgb.shape, []).append(i)
        for idx in by_shape.values():
            batch = np.stack([images[i] for i in idx]) if len(idx) > 1 else images[idx[0]]
            boxes, probs = self.net.detect(batch)
            if len(idx) == 1:
                boxes, probs = [boxes], [probs]
            for i, b, p in zip(idx, boxes, probs):
                if b is not None:
                    out[i] = [(*map(float, bb[:4]), float(pp)) for bb, pp in zip(b, p)
                              if pp is not None and pp >= self.min_score]
        return out


class YunetDetector:
    def __init__(self, model: str, min_face: int, min_score: float, threads: int):
        import cv2

        cv2.setNumThreads(threads)
        self.cv2, self.min_face = cv2, min_face
        self.net = cv2.FaceDetectorYN.create(model, "", (320, 320), score_threshold=min_score)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(np.ascontiguousarray(rgb[:, :, ::-1]))  # the model reads BGR
        if faces is None:
            return []
        return [(float(x), float(y), float(x + fw), float(y + fh), float(f[-1]))
                for f in faces for x, y, fw, fh in [f[:4]] if min(fw, fh) >= self.min_face]

    def detect_many(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(rgb) for rgb in images]


def _detector(cfg: FacesConfig, env: ModelEnv) -> Detector:
    if cfg.engine == "yunet":
        problem = need_path(f"{SETTING}.model", cfg.model, "YuNet ONNX file")
        if problem:
            raise FileNotFoundError(problem)
        return YunetDetector(cfg.model, cfg.min_face, cfg.min_score, env.threads)
    return MtcnnDetector(cfg.min_face, cfg.min_score, env.torch_device)


def summarize(faces: list[Face], width: int, height: int) -> tuple[int, float, list[dict]]:
    """Count, largest-box area fraction and ``BOX_TYPE`` dicts (largest first) of one image's faces."""
    boxes = [box(x0 / width, y0 / height, x1 / width, y1 / height, s) for x0, y0, x1, y1, s in faces]
    boxes.sort(key=lambda b: (b["x1"] - b["x0"]) * (b["y1"] - b["y0"]), reverse=True)
    area = (boxes[0]["x1"] - boxes[0]["x0"]) * (boxes[0]["y1"] - boxes[0]["y0"]) if boxes else 0.0
    return len(boxes), float(area), boxes


class FacesModel:
    name = "faces"
    columns = COLUMNS
    needs: tuple[str, ...] = ()

    def __init__(self, cfg: FacesConfig):
        self.cfg = cfg
        self.detector: Detector | None = None

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        self.detector = _detector(self.cfg, env)

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        if self.detector is None:
            raise RuntimeError("FacesModel.measure before setup")
        out: dict[str, list] = {c: [None] * len(images) for c in COLUMNS}
        ok = [i for i, img in enumerate(images) if usable(img)]
        found = self.detector.detect_many([images[i] for i in ok])
        for i, faces in zip(ok, found):
            h, w = images[i].shape[:2]
            count, area, boxes = summarize(faces, w, h)
            out["stat_face_count"][i], out["stat_face_area"][i], out["face_boxes"][i] = count, area, boxes
        return out
