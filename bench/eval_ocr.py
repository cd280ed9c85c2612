"""OCR stage accuracy (CER, text-area AUC) and CPU throughput, in one run.

Usage: ``python bench/eval_ocr.py [--seed 0] [--n 12]``  (prints a markdown report)

- CER: ``--n`` clean renders per language (white or light flat page, dark text, 1-5 lines of
  seeded words, 20-40 px; English in DejaVu Sans/Serif/Mono from matplotlib, Chinese in the
  Debian WenQuanYi Micro Hei font, ``make fonts``). CER = summed edit distance / summed
  reference length, NFKC, whitespace runs collapsed (line breaks count as spaces).
- Text-area AUC: ``stat_ocr_area`` separating text images (captions over photos, signs on
  photos, posters with a photo inset, text pages; English and Chinese) from the photos of
  ``curate.sample.PHOTOS`` (each as shipped and as a mirrored 80 % centre crop), bounded to
  640 px like the model stage's ``rgb`` view; ``sklearn.metrics.roc_auc_score``.
- Throughput: images/s per core (CPU time of this process, ONNX Runtime on one thread) and
  wall, for detection only (``Ocr.detect``) and detection + classifier + recognition
  (``Ocr.measure``) on 512 x 512 images: 8 with text, 8 text-free photos.
Default ``OcrConfig`` (rapidocr, PP-OCRv4 from the wheel, det_side 960, min_score 0.6).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import random
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.models import ocr  # noqa: E402
from curate.models.base import ModelEnv  # noqa: E402
from curate.models.config import OcrConfig  # noqa: E402
from curate.sample import PHOTOS  # noqa: E402
from curate.sample.ocr_text import edit_distance, norm  # noqa: E402
from curate.sample.photos import load_photo  # noqa: E402

TTF = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
LATIN = [TTF / "DejaVuSans.ttf", TTF / "DejaVuSerif.ttf", TTF / "DejaVuSansMono.ttf", TTF / "DejaVuSans-Bold.ttf"]
CJK = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
EN_WORDS = ("river market garden yellow window station morning coffee simple number orange "
            "summer travel silver bridge winter letter forest paper museum open sale today free "
            "hotel north city 2024 42 new best price menu street").split()
ZH_WORDS = ("今天 天气 非常 好 我们 一起 去 公园 散步 欢迎 光临 北京 上海 饭店 好吃 学习 快乐 "
            "春天 花开 中国 人民 大学 图书馆 开放 时间 新年 快乐 火车站 出口 超市 打折").split()


def photo(name: str, side: int = 640) -> Image.Image:
    img = load_photo(name).convert("RGB")
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def phrase(rng: random.Random, lang: str, width_chars: int) -> str:
    words, sep = (EN_WORDS, " ") if lang == "en" else (ZH_WORDS, "")
    out = rng.choice(words)
    while True:
        nxt = out + sep + rng.choice(words)
        if len(nxt) > width_chars:
            return out
        out = nxt


def font(lang: str, rng: random.Random, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(rng.choice(LATIN) if lang == "en" else CJK), size)


def draw_lines(img, rng, lang, lines, size, x, y, fill, stroke=0, stroke_fill="white") -> list[str]:
    draw, f = ImageDraw.Draw(img), font(lang, rng, size)
    per_line = int((img.width - x - 10) / (size * (0.66 if lang == "en" else 1.05)))
    texts = [phrase(rng, lang, per_line) for _ in range(lines)]
    for i, t in enumerate(texts):
        draw.text((x, y + i * int(size * 1.8)), t, font=f, fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
    return texts


def clean_render(rng, lang) -> tuple[np.ndarray, str]:
    shade = rng.randint(225, 255)
    img = Image.new("RGB", (512, 512), (shade, shade, rng.randint(215, 255)))
    size = rng.randint(20, 40)
    lines = rng.randint(1, min(5, 470 // int(size * 1.8)))
    texts = draw_lines(img, rng, lang, lines, size, 20, rng.randint(15, 40), (rng.randint(0, 60),) * 3)
    return np.asarray(img), " ".join(texts)


def text_image(rng, kind, lang, names) -> np.ndarray:
    """One positive: ``caption`` over a photo, ``sign`` on a photo, ``poster``, ``page``."""
    if kind == "page":
        img = Image.new("RGB", (480, 640), "white")
        draw_lines(img, rng, lang, rng.randint(8, 14), rng.randint(16, 22), 30, 30, "black")
        return np.asarray(img)
    if kind == "poster":
        img = Image.new("RGB", (512, 640), tuple(rng.randint(0, 255) for _ in range(3)))
        img.paste(photo(rng.choice(names), 300), (rng.randint(0, 150), 260))
        dark = sum(img.getpixel((5, 5))) < 380
        draw_lines(img, rng, lang, 1, rng.randint(46, 64), 20, 30, "white" if dark else "black")
        draw_lines(img, rng, lang, rng.randint(2, 3), rng.randint(22, 28), 20, 130, "white" if dark else "black")
        return np.asarray(img)
    img = photo(rng.choice(names)).copy()
    if kind == "caption":
        size = rng.randint(26, 40)
        n = rng.randint(1, 3)
        draw_lines(img, rng, lang, n, size, 20, img.height - 20 - n * int(size * 1.8), "white", 3, "black")
        return np.asarray(img)
    w, h = rng.randint(img.width // 2, img.width - 40), rng.randint(90, 160)
    x0, y0 = rng.randint(10, img.width - w - 10), rng.randint(10, img.height - h - 10)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    sign = Image.new("RGB", (w, h), colour)
    draw_lines(sign, rng, lang, 2, rng.randint(24, 32), 12, 12, "white" if sum(colour) < 380 else "black")
    img.paste(sign, (x0, y0))
    return np.asarray(img)


def timed(fn, images) -> tuple[float, float]:
    """(images/s per core from process CPU time, images/s wall)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for img in images:
        fn(img)
    return len(images) / (time.process_time() - c0), len(images) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=12, help="clean renders per language for the CER")
    args = ap.parse_args()
    if not CJK.exists():
        print(f"no CJK font at {CJK}: run `make fonts` (Debian fonts-wqy-microhei)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    model = ocr.build(OcrConfig())
    t0 = time.perf_counter()
    model.setup(ModelEnv("cpu", 1))
    setup_s = time.perf_counter() - t0

    cer = {}
    for lang in ("en", "zh"):
        renders = [clean_render(rng, lang) for _ in range(args.n)]
        got = model.measure([r[0] for r in renders], {})["ocr_text"]
        edits = sum(edit_distance(norm(ref), norm(hyp)) for (_, ref), hyp in zip(renders, got))
        chars = sum(len(norm(ref)) for _, ref in renders)
        worst = max(zip(renders, got), key=lambda p: edit_distance(norm(p[0][1]), norm(p[1])))
        cer[lang] = (edits / chars, edits, chars, worst[0][1], worst[1])

    names = list(PHOTOS)
    kinds = ("caption", "sign", "poster", "page")
    positives = [(k, text_image(rng, k, lang, names)) for k in kinds for lang in ("en", "zh") for _ in range(4)]
    negatives = []
    for name in names:
        img = photo(name)
        negatives.append((name, np.asarray(img)))
        crop = ImageOps.mirror(img.crop((img.width // 10, img.height // 10, img.width * 9 // 10, img.height * 9 // 10)))
        negatives.append((name + " (crop)", np.asarray(crop)))
    pos = model.measure([p[1] for p in positives], {})
    neg = model.measure([n[1] for n in negatives], {})
    from sklearn.metrics import roc_auc_score

    scores = pos["stat_ocr_area"] + neg["stat_ocr_area"]
    labels = [1] * len(positives) + [0] * len(negatives)
    auc = roc_auc_score(labels, scores)
    auc_kind = {k: roc_auc_score([1] * 8 + [0] * len(negatives),
                                 [a for (kk, _), a in zip(positives, pos["stat_ocr_area"]) if kk == k] + neg["stat_ocr_area"])
                for k in kinds}
    false_hits = [(n[0], a, t) for n, a, t in zip(negatives, neg["stat_ocr_area"], neg["ocr_text"]) if a > 0]
    missed = [(p[0], a) for p, a in zip(positives, pos["stat_ocr_area"]) if a == 0]

    text512 = [np.asarray(Image.fromarray(p[1]).resize((512, 512))) for p in positives[::4][:8]]
    photo512 = [np.asarray(ImageOps.fit(Image.fromarray(n[1]), (512, 512))) for n in negatives[::4][:8]]
    model.measure(text512[:1], {})  # warm
    rows = []
    for label, fn in (("detection only", model.detect), ("detection + recognition", lambda im: model.measure([im], {}))):
        rows.append((label, timed(fn, text512), timed(fn, photo512), timed(fn, text512 + photo512)))

    print(f"# OCR stage: accuracy and CPU throughput\n\n`python bench/eval_ocr.py --seed {args.seed} --n {args.n}`; "
          f"rapidocr_onnxruntime PP-OCRv4 (wheel), det_side {OcrConfig().det_side}, min_score {OcrConfig().min_score}, one ONNX Runtime thread; setup {setup_s:.1f} s\n")
    print("| measure | value | on |\n|---|---:|---|")
    for lang, label in (("en", "English"), ("zh", "Chinese")):
        rate, edits, chars, _, _ = cer[lang]
        print(f"| CER {label} | {rate:.2%} | {args.n} clean renders, {edits} edits / {chars} chars |")
    print(f"| text-area AUC | {auc:.3f} | {len(positives)} text images vs {len(negatives)} text-free photos |")
    for k in kinds:
        print(f"| text-area AUC, {k}s only | {auc_kind[k]:.3f} | 8 (4 en, 4 zh) vs {len(negatives)} |")
    print("\n| throughput, 512 x 512 | text images: /s per core (wall) | text-free photos | all 16 |\n|---|---:|---:|---:|")
    for label, *cells in rows:
        print(f"| {label} | " + " | ".join(f"{c:.2f} ({w:.2f})" for c, w in cells) + " |")
    det, full = rows[0][1][0], rows[1][1][0]
    print(f"\nrecognition + classifier on the text images: {1 / full - 1 / det:.3f} s/image on top of detection's {1 / det:.3f}")
    print(f"\nworst English render: ref {cer['en'][3]!r} read {cer['en'][4]!r}")
    print(f"worst Chinese render: ref {cer['zh'][3]!r} read {cer['zh'][4]!r}")
    print(f"photos with any text found ({len(false_hits)} / {len(negatives)}): "
          + ", ".join(f"{n} area {a:.3f} {t!r}" for n, a, t in false_hits))
    print(f"text images with no text found ({len(missed)} / {len(positives)}): " + ", ".join(k for k, _ in missed))
    print(f"median area: text images {np.median(pos['stat_ocr_area']):.3f}, photos {np.median(neg['stat_ocr_area']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
