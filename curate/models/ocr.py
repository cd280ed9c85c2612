"""OCR: text lines, their area and their text, with PaddleOCR's PP-OCR models.

Columns (``models`` group): ``stat_ocr_boxes`` (recognised lines with score >= ``min_score``),
``stat_ocr_area`` (union of those lines' boxes / image area, ``base.box_area_union``),
``stat_ocr_confidence`` (their mean recognition score; null when there are none),
``ocr_text`` (their text joined by newlines, top to bottom; ``""`` when none) and
``ocr_boxes`` (``base.box`` dicts: the axis-aligned bounds of each line's quad, fractions of
the frame, with its recognition score). A text-free image is measured: 0, 0.0, null, "", [].

Engines (``models.ocr.engine``):
- ``rapidocr`` (default): ``rapidocr_onnxruntime`` 1.4.4 on ONNX Runtime; its wheel ships
  PP-OCRv4 det/rec and the v2 direction classifier. ``models.ocr.model``: a folder whose ONNX
  files override the wheel's, found by name: one ``*det*.onnx``, one ``*rec*.onnx``, at most
  one ``*cls*.onnx`` (else the wheel's classifier) and, for a recogniser without its
  character list in its metadata, one ``*keys*.txt`` / ``*dict*.txt``. On ``cuda`` the three
  sessions ask for ONNX Runtime's CUDA provider (onnxruntime-gpu; RapidOCR falls back to CPU
  with a warning when it is absent).
- ``paddleocr``: the ``paddleocr`` 3.x pipeline (``pip install paddleocr paddlepaddle``);
  ``model``: a folder with ``det/``, ``rec/`` and optionally ``cls/`` Paddle inference model
  folders, or null to let paddleocr fetch its defaults (needs a model source).

Both engines see each image bounded to ``det_side`` on its long side (never enlarged):
detection runs at that size, and recognition (with the direction classifier) runs only on
the crops detection found, so a text-free image costs one detection pass. Box fractions are
of that bounded frame, which are the fractions of the original.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from curate.models.base import EXTRA, ModelEnv, box, box_area_union, need_packages, need_path
from curate.models.config import OcrConfig

COLUMNS = ["stat_ocr_boxes", "stat_ocr_area", "stat_ocr_confidence", "ocr_text", "ocr_boxes"]
INSTALL = f"pip install 'refinery[{EXTRA}]'  (rapidocr_onnxruntime==1.4.4)"
PADDLE_INSTALL = "paddleocr paddlepaddle"
_ROLES = {"det": ("*det*.onnx",), "rec": ("*rec*.onnx",), "cls": ("*cls*.onnx",), "keys": ("*keys*.txt", "*dict*.txt")}


def _model_files(folder: str) -> tuple[dict[str, str], str | None]:
    """The override files in ``folder`` by role, and the problem line when they are unusable."""
    found, problems = {}, []
    for role, patterns in _ROLES.items():
        hits = sorted({p for pat in patterns for p in glob.glob(os.path.join(folder, pat))})
        if len(hits) > 1:
            problems.append(f"{len(hits)} {role} files ({', '.join(os.path.basename(h) for h in hits)})")
        elif hits:
            found[role] = hits[0]
        elif role in ("det", "rec"):
            problems.append(f"no {patterns[0]}")
    if problems:
        return found, f"models.ocr.model: folder {folder} has {'; '.join(problems)} (needs one *det*.onnx and one *rec*.onnx)"
    return found, None


def check(cfg: OcrConfig) -> str | None:
    """None when the engine's package and the model folder (if any) are here; no loading."""
    folder = os.path.expanduser(cfg.model) if cfg.model else None
    if cfg.engine == "paddleocr":
        problem = need_packages("models.ocr.engine=paddleocr", ("paddleocr", "paddle"), PADDLE_INSTALL)
        if problem or folder is None:
            return problem
        problem = need_path("models.ocr.model", cfg.model, "OCR model folder")
        if problem is None and not all(os.path.isdir(os.path.join(folder, d)) for d in ("det", "rec")):
            problem = f"models.ocr.model: folder {cfg.model} needs det/ and rec/ Paddle inference model folders"
        return problem
    problem = need_packages("models.ocr", ("rapidocr_onnxruntime", "onnxruntime"), f"'refinery[{EXTRA}]'")
    if problem or folder is None:
        return problem
    problem = need_path("models.ocr.model", cfg.model, "OCR model folder")
    if problem is None and not os.path.isdir(folder):
        problem = f"models.ocr.model: {cfg.model} is not a folder (it holds the det/rec/cls ONNX files)"
    return problem or _model_files(folder)[1]


def bounded(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` area-resized so its long side is at most ``side`` (never enlarged)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    import cv2

    scale = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def lines_to_columns(lines: list[tuple[np.ndarray, str, float]], shape: tuple[int, int], min_score: float) -> dict:
    """One image's column values from its recognised lines (quad in pixels of ``shape``, text, score)."""
    h, w = shape
    kept = [(np.asarray(q, dtype=np.float64).reshape(-1, 2), t, float(s)) for q, t, s in lines if float(s) >= min_score]
    boxes = [box(q[:, 0].min() / w, q[:, 1].min() / h, q[:, 0].max() / w, q[:, 1].max() / h, s) for q, _, s in kept]
    return {
        "stat_ocr_boxes": len(kept),
        "stat_ocr_area": box_area_union([(b["x0"], b["y0"], b["x1"], b["y1"]) for b in boxes]),
        "stat_ocr_confidence": float(np.mean([s for _, _, s in kept])) if kept else None,
        "ocr_text": "\n".join(t for _, t, _ in kept),
        "ocr_boxes": boxes,
    }


class Ocr:
    """The OCR model stage (``curate.models.base.Model``); ``build`` makes it, ``setup`` loads it."""

    name = "ocr"
    columns = COLUMNS
    needs: tuple[str, ...] = ()

    def __init__(self, cfg: OcrConfig):
        self.cfg = cfg
        self._engine = None
        self.providers: list[str] = []  # the ONNX Runtime providers the detector got (after setup)

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        self._engine = self._load_paddle(env) if self.cfg.engine == "paddleocr" else self._load_rapid(env)

    def _load_rapid(self, env: ModelEnv):
        from rapidocr_onnxruntime import RapidOCR

        cuda = env.device == "cuda"
        args = dict(
            intra_op_num_threads=env.threads, inter_op_num_threads=1, text_score=self.cfg.min_score,
            max_side_len=self.cfg.det_side, print_verbose=False,
            # The image arrives bounded to det_side: detect at that size ("min" with a floor of
            # 32 px never rescales it; RapidOCR's own default enlarges the short side to 736).
            det_limit_type="min", det_limit_side_len=32,
            det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda,
        )
        if self.cfg.model:
            files, problem = _model_files(os.path.expanduser(self.cfg.model))
            if problem:
                raise FileNotFoundError(problem)
            args.update(det_model_path=files["det"], rec_model_path=files["rec"])
            if "cls" in files:
                args["cls_model_path"] = files["cls"]
            if "keys" in files:
                args["rec_keys_path"] = files["keys"]
        engine = RapidOCR(**args)
        self.providers = list(engine.text_det.infer.session.get_providers())
        return engine

    def _load_paddle(self, env: ModelEnv):
        from paddleocr import PaddleOCR

        dirs = {}
        if self.cfg.model:
            folder = os.path.expanduser(self.cfg.model)
            dirs = dict(text_detection_model_dir=os.path.join(folder, "det"),
                        text_recognition_model_dir=os.path.join(folder, "rec"))
            if os.path.isdir(os.path.join(folder, "cls")):
                dirs["textline_orientation_model_dir"] = os.path.join(folder, "cls")
        self.providers = ["paddle:" + ("gpu" if env.device == "cuda" else "cpu")]
        return PaddleOCR(
            use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=True,
            text_det_limit_type="max", text_det_limit_side_len=self.cfg.det_side,
            text_rec_score_thresh=self.cfg.min_score,
            device="gpu:0" if env.device == "cuda" else "cpu", cpu_threads=env.threads, **dirs,
        )

    def _lines(self, bgr: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        if self.cfg.engine == "paddleocr":
            res = self._engine.predict(bgr)[0]
            return list(zip(res["rec_polys"], res["rec_texts"], res["rec_scores"]))
        # RapidOCR returns (None, None) straight after detection when it finds nothing: the
        # classifier and recogniser never run on a text-free image.
        result, _ = self._engine(bgr, use_det=True, use_cls=True, use_rec=True)
        return [(q, t, s) for q, t, s in (result or [])]

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Detection only (rapidocr): the text quads of one RGB image, in pixels of its bounded frame."""
        result, _ = self._engine(_bgr(bounded(image, self.cfg.det_side)), use_det=True, use_cls=False, use_rec=False)
        return [np.asarray(q) for q in (result or [])]

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        if self._engine is None:
            raise RuntimeError("Ocr.measure before setup()")
        out: dict[str, list] = {c: [] for c in COLUMNS}
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
                values = dict.fromkeys(COLUMNS)  # not an image OCR can read: not measured
            else:
                small = bounded(image, self.cfg.det_side)
                values = lines_to_columns(self._lines(_bgr(small)), small.shape[:2], self.cfg.min_score)
            for c in COLUMNS:
                out[c].append(values[c])
        return out


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])  # both engines take OpenCV's channel order


def build(cfg: OcrConfig) -> Ocr:
    return Ocr(cfg)
