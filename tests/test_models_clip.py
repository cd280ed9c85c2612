"""CLIP embedding stage and its heads (aesthetic, CLIP NSFW) with a tiny random open_clip model.

The tiny model (embed_dim 32, a 2-layer ViT of width 64 on 64-px inputs, a 1-layer text tower)
is built from a config JSON written here, seeded; heads are random MLPs in the published
checkpoint layouts, saved the way their authors save them. With random weights every pair of
photos has a high cosine (about 0.93-0.99), so the similarity test asserts a ranking: each
near copy (resized to 90 %, re-encoded as JPEG q=80) is closer to its original than any two
distinct photos are to each other, which held by a margin of >= 0.004 over six seeds.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import torch  # noqa: E402 -- make setup installs the models extra: missing is a failure, not a skip
import open_clip  # noqa: E402

from curate.models import clip, heads  # noqa: E402
from curate.models.base import ModelEnv, ModelUnavailable  # noqa: E402
from curate.models.config import ClipConfig, HeadConfig  # noqa: E402
from curate.schema import conform, subschema  # noqa: E402
from photos import encode, photo  # noqa: E402

torch.set_num_threads(1)
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}
NAMES = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower", "grace_hopper")
ENV = ModelEnv("cpu", 1)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


@pytest.fixture(scope="module")
def embedder(tiny_config):
    torch.manual_seed(0)
    model = clip.build(ClipConfig(enabled=True, model_config_file=tiny_config, model=None, batch_size=4))
    model.setup(ENV)
    return model


@pytest.fixture(scope="module")
def photos():
    return {n: np.asarray(photo(n)) for n in NAMES}


def near_copy(arr: np.ndarray) -> np.ndarray:
    img = Image.fromarray(arr)
    img = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.Resampling.BICUBIC)
    return np.asarray(Image.open(io.BytesIO(encode(img, "JPEG", 80))).convert("RGB"))


def embeddings(model, images) -> np.ndarray:
    table = pa.table({"row_key": pa.array(range(len(images)), pa.int64()), **model.measure(images, {})})
    table = conform(table, subschema(["row_key", "clip_embedding"]))
    assert table.schema.field("clip_embedding").type == pa.list_(pa.float16())
    return np.asarray(table.column("clip_embedding").to_pylist(), dtype=np.float32)


def test_build_loads_nothing(tmp_path):
    missing = str(tmp_path / "absent")
    model = clip.build(ClipConfig(enabled=True, model_config_file=missing + ".json", model=missing + ".pt"))
    assert model.model is None and model.columns == ["clip_embedding"] and model.needs == ()
    with pytest.raises(RuntimeError, match="before setup"):
        model.measure([np.zeros((8, 8, 3), np.uint8)], {})
    head = heads.build("aesthetic", HeadConfig(enabled=True, model=missing + ".pth"))
    assert head.net is None and head.columns == ["stat_aesthetic"] and head.needs == ("clip_embedding",)
    assert heads.build("clip_nsfw", HeadConfig(model=missing)).columns == ["stat_clip_nsfw"]


def test_check_lines(tmp_path, tiny_config, monkeypatch):
    assert clip.check(ClipConfig(model_config_file=tiny_config, model=None)) is None
    assert clip.check(ClipConfig(arch="ViT-L-14", model="openai")) is None  # a tag: verified at setup
    lines = {
        "config": clip.check(ClipConfig(model_config_file=str(tmp_path / "nope.json"), model=None)),
        "tag+config": clip.check(ClipConfig(model_config_file=tiny_config, model="openai")),
        "ckpt": clip.check(ClipConfig(model_config_file=tiny_config, model=str(tmp_path / "w.pt"))),
        "arch": clip.check(ClipConfig(arch="ViT-Q-99", model="openai")),
        "none": clip.check(ClipConfig(arch="ViT-L-14", model=None)),
        "head": heads.check("aesthetic", HeadConfig(model=str(tmp_path / "a.pth"))),
        "head-none": heads.check("clip_nsfw", HeadConfig(model=None)),
    }
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 8}')
    lines["bad"] = clip.check(ClipConfig(model_config_file=str(bad), model=None))
    expect = {"config": "models.clip.model_config_file", "tag+config": "models.clip.model", "ckpt": "models.clip.model",
              "arch": "models.clip.arch", "none": "models.clip.model", "head": "models.aesthetic.model",
              "head-none": "models.clip_nsfw.model", "bad": "vision_cfg"}
    for key, line in lines.items():
        assert line and "\n" not in line and expect[key] in line, (key, line)
    import curate.models.base as base

    monkeypatch.setattr(base, "missing_packages", lambda *mods: [m for m in mods if m in ("open_clip", "torch")])
    line = clip.check(ClipConfig(model_config_file=tiny_config, model=None))
    assert line.startswith("models.clip:") and "open_clip" in line and "pip install" in line
    assert "torch" in heads.check("aesthetic", HeadConfig(model=tiny_config)) and "pip install" in line


def test_offline_tag_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(ModelUnavailable) as err:
        clip.build(ClipConfig(arch="RN50", model="openai")).setup(ENV)
    assert "models.clip.model" in str(err.value) and "not available offline" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelUnavailable, match="not an open_clip pretrained tag"):
        clip.build(ClipConfig(arch="RN50", model="no-such-tag")).setup(ENV)


def test_preprocess_is_open_clips(embedder, photos):
    _, _, val = open_clip.create_model_and_transforms(embedder._source()[0])
    mean = np.asarray(embedder.preprocess["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(embedder.preprocess["std"], np.float32).reshape(3, 1, 1)
    for arr in [photos["chelsea"], photos["rocket"], np.ascontiguousarray(photos["china"][:50, :300])]:
        mine = (clip.fit(arr, embedder.preprocess).transpose(2, 0, 1) / 255.0 - mean) / std
        assert np.abs(mine - val(Image.fromarray(arr)).numpy()).max() < 1e-4
    longest = dict(embedder.preprocess, resize_mode="longest", fill_color=7)
    tile = clip.fit(np.full((20, 60, 3), 200, np.uint8), longest)
    assert tile.shape == (64, 64, 3) and tile[0, 0, 0] == 7 and tile[32, 32, 0] == 200


def test_embeddings_shape_norm_and_similarity(embedder, photos):
    originals = [photos[n] for n in NAMES]
    emb = embeddings(embedder, originals + [near_copy(a) for a in originals] + [originals[0].copy()])
    assert emb.shape == (2 * len(NAMES) + 1, 32)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=3e-3)
    assert np.array_equal(emb[0], emb[-1])  # the same pixels: the same embedding
    k = len(NAMES)
    sims = emb @ emb.T
    near = np.array([sims[i, k + i] for i in range(k)])
    distinct = sims[:k, :k][~np.eye(k, dtype=bool)]
    assert near.min() > distinct.max(), (near.round(4), distinct.max())
    assert all(int(np.argmax(sims[k + i, :k])) == i for i in range(k))


def test_mixed_sizes_batch(embedder, photos):
    images = [photos["coffee"], np.zeros((3, 700, 3), np.uint8), photos["grace_hopper"][:, :, 0], np.full((1, 1, 3), 9, np.uint8),
              np.ascontiguousarray(photos["astronaut"][::3, ::2]), np.zeros((0, 5, 3), np.uint8)]
    out = embedder.measure(images, {})["clip_embedding"]
    assert len(out) == 6 and out[5] is None and all(len(v) == 32 for v in out[:5])
    alone = [embedder.measure([im], {})["clip_embedding"][0] for im in images[:5]]  # batch_size 4 split vs one by one
    assert np.allclose(np.asarray(out[:5], np.float32), np.asarray(alone, np.float32), atol=2e-3)


def test_local_checkpoint_loads_strictly(tmp_path, tiny_config, embedder, photos):
    ckpt = tmp_path / "tiny.pt"
    torch.save(embedder.model.state_dict(), ckpt)
    loaded = clip.build(ClipConfig(model_config_file=tiny_config, model=str(ckpt)))
    loaded.setup(ENV)
    images = [photos["chelsea"], photos["rocket"]]
    assert np.allclose(embeddings(loaded, images), embeddings(embedder, images), atol=1e-3)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY, "embed_dim": 16}))
    with pytest.raises(ModelUnavailable, match=r"models\.clip\.model: checkpoint .* does not load"):
        clip.build(ClipConfig(model_config_file=str(other), model=str(ckpt))).setup(ENV)


# ---- heads -----------------------------------------------------------------------------------

def published_aesthetic(width: int, relu: bool = False):
    """The improved-aesthetic-predictor MLP exactly as its repository defines it."""
    nn = torch.nn
    act = [nn.ReLU()] if relu else []
    mlp = nn.Module()
    mlp.layers = nn.Sequential(nn.Linear(width, 1024), *act, nn.Dropout(0.2), nn.Linear(1024, 128), *act, nn.Dropout(0.2),
                               nn.Linear(128, 64), *act, nn.Dropout(0.1), nn.Linear(64, 16), *act, nn.Linear(16, 1))
    return mlp.eval()


class PublishedNsfw(torch.nn.Module):
    """LAION's NSFWModel_L14 port (src/models.py), at a chosen input width."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = torch.nn.Module()
        self.norm.register_buffer("mean", torch.randn(width) * 0.01)
        self.norm.register_buffer("variance", torch.rand(width) * 0.01 + 1e-3)
        self.linear_1, self.linear_2 = torch.nn.Linear(width, 64), torch.nn.Linear(64, 512)
        self.linear_3, self.linear_4 = torch.nn.Linear(512, 256), torch.nn.Linear(256, 1)

    def forward(self, x):
        x = (x - self.norm.mean) / (self.norm.variance.sqrt() + 1e-10)
        x = torch.relu(self.linear_3(torch.relu(self.linear_2(torch.relu(self.linear_1(x))))))
        return torch.sigmoid(self.linear_4(x))


def save(module, path):
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    else:
        torch.save(module.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def context(embedder, photos):
    """What the fused stage hands the heads: the clip model's returned column (a None row too)."""
    images = [photos[n] for n in NAMES] + [np.zeros((0, 4, 3), np.uint8)]
    return embedder.measure(images, {})


def direct(module, context) -> np.ndarray:
    x = np.asarray([v for v in context["clip_embedding"] if v is not None], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy().reshape(-1)


@pytest.mark.parametrize("relu,suffix", [(False, ".pth"), (True, ".pth"), (False, ".safetensors")])
def test_aesthetic_loads_published_format(tmp_path, context, relu, suffix):
    torch.manual_seed(3)
    mlp = published_aesthetic(32, relu)
    assert {k.split(".")[1] for k in mlp.state_dict()} == ({"0", "3", "6", "9", "11"} if relu else {"0", "2", "4", "6", "7"})
    head = heads.build("aesthetic", HeadConfig(enabled=True, model=save(mlp, tmp_path / f"mlp{suffix}")))
    head.setup(ENV)
    got = head.measure([None] * len(context["clip_embedding"]), context)["stat_aesthetic"]
    assert got[-1] is None
    assert np.abs(np.asarray(got[:-1]) - direct(mlp.layers, context)).max() <= 1e-5
    arr = np.asarray(context["clip_embedding"][:3], np.float32)  # an (n, d) array is accepted too
    assert np.allclose(head.measure([None] * 3, {"clip_embedding": arr})["stat_aesthetic"], got[:3], atol=1e-6)


def test_clip_nsfw_loads_published_format(tmp_path, context):
    torch.manual_seed(4)
    net = PublishedNsfw(32).eval()
    published = ["norm.mean", "norm.variance", *[f"linear_{i}.{p}" for i in range(1, 5) for p in ("weight", "bias")]]
    assert sorted(net.state_dict()) == sorted(published)
    head = heads.build("clip_nsfw", HeadConfig(enabled=True, model=save(net, tmp_path / "nsfw.pth")))
    head.setup(ENV)
    got = head.measure([None] * len(context["clip_embedding"]), context)["stat_clip_nsfw"]
    assert got[-1] is None and all(0.0 <= v <= 1.0 for v in got[:-1])
    assert np.abs(np.asarray(got[:-1]) - direct(net, context)).max() <= 1e-5
    assert len(set(np.round(got[:-1], 6))) > 1  # the scores depend on the image


def test_heads_wrong_width_and_wrong_format(tmp_path, context):
    torch.manual_seed(5)
    for name, module in (("aesthetic", published_aesthetic(768)), ("clip_nsfw", PublishedNsfw(768))):
        head = heads.build(name, HeadConfig(enabled=True, model=save(module, tmp_path / f"{name}768.pth")))
        head.setup(ENV)
        with pytest.raises(ModelUnavailable) as err:
            head.measure([None] * len(context["clip_embedding"]), context)
        line = str(err.value)
        assert f"models.{name}.model" in line and "768" in line and "32" in line and "\n" not in line
    wrong = tmp_path / "nsfw_as_aesthetic.pth"
    torch.save(PublishedNsfw(32).state_dict(), wrong)
    for name in ("aesthetic", "clip_nsfw"):
        bad = str(wrong) if name == "aesthetic" else save(published_aesthetic(32), tmp_path / "aes.pth")
        with pytest.raises(ModelUnavailable, match=rf"models\.{name}\.model: .* is not a LAION"):
            heads.build(name, HeadConfig(enabled=True, model=bad)).setup(ENV)


def test_tiny_clip_throughput_on_512px(embedder, photos):
    """Not a timed assertion: the figure the bench reports (images/s on one thread), printed."""
    import time

    images = [np.asarray(Image.fromarray(photos[n]).resize((512, 512))) for n in NAMES] * 2
    start = time.perf_counter()
    out = embedder.measure(images, {})["clip_embedding"]
    rate = len(images) / (time.perf_counter() - start)
    print(f"tiny CLIP on 512-px images: {rate:.1f} images/s on 1 thread")
    assert all(v is not None for v in out)
