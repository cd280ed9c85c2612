"""The ``hf`` caption backend on tiny random LLaVA, Qwen2-VL and GLM-4V snapshot folders.

The folders (``caption/tiny.py``) are built once per session; the photos are skimage's,
at their own sizes and cropped, so every batch pads rows of different lengths.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from caption import tiny as tiny_vlm  # noqa: E402
from caption.backends import base  # noqa: E402
from caption.backends.base import BackendEnv  # noqa: E402
from caption.backends.hf import HFBackend, check, to_pil  # noqa: E402
from caption.config import CaptionConfig, ModelSpec  # noqa: E402
from caption.prompts import PROMPTS  # noqa: E402

torch.set_num_threads(1)
ENV = BackendEnv("cpu", 1, "float32")
BUILDERS = {"llava": tiny_vlm.tiny_llava, "qwen2_vl": tiny_vlm.tiny_qwen2_vl, "glm4v": tiny_vlm.tiny_glm4v}
NEW_TOKENS = 10


def config(model_id: str, **spec) -> CaptionConfig:
    return CaptionConfig(backend="hf", model=ModelSpec(id=model_id, max_new_tokens=NEW_TOKENS, **spec))


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-vlm")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module", params=list(BUILDERS))
def backend(request, tiny_folders) -> HFBackend:
    b = HFBackend(config(str(tiny_folders[request.param])))
    b.setup(ENV)
    return b


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    return [astronaut, coffee, skimage.data.chelsea(), skimage.data.rocket(),
            astronaut[40:160, 100:420], coffee[::3, ::2]]  # a wide crop; a strided (non-contiguous) view


def prompts_for(n: int) -> list[str]:
    """Prompts of different lengths (with and without hints), so rows pad differently."""
    out = [PROMPTS["brief-en"].render(), PROMPTS["detailed-en"].render(caption="a photo on the web"),
           PROMPTS["brief-en"].render(ocr="EXIT"), PROMPTS["detailed-en"].render()]
    return [out[i % len(out)] for i in range(n)]


def test_tiny_folders_load_as_snapshots(tiny_folders):
    for name, folder in tiny_folders.items():
        assert check(config(str(folder))) is None, name
        assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {p.name for p in folder.iterdir()}


def test_tiny_builders_are_seeded(tmp_path):
    from safetensors.numpy import load_file

    a, b = (load_file(tiny_vlm.tiny_llava(tmp_path / d) / "model.safetensors") for d in ("a", "b"))
    c = load_file(tiny_vlm.tiny_llava(tmp_path / "c", seed=1) / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    projections = [k for k in a if k.endswith("q_proj.weight")]
    assert projections and not any(np.array_equal(a[k], c[k]) for k in projections)


def test_captions_one_string_per_photo(backend, photos):
    got = backend.caption(photos, prompts_for(len(photos)))
    assert len(got) == len(photos)
    assert all(isinstance(t, str) and t.strip() for t in got), got
    assert len(set(got)) > 1, got  # the images reach the model: different photos, different text
    assert backend.caption([], []) == []


def test_batch_equals_one_by_one(backend, photos):
    prompts = prompts_for(len(photos))
    inputs = backend.processor(text=[backend.processor.apply_chat_template(backend.messages(p), add_generation_prompt=True)
                                     for p in prompts], images=[to_pil(im) for im in photos], padding=True, return_tensors="pt")
    pads = (inputs["attention_mask"] == 0).sum(dim=1)
    assert pads.max() > 0 and (inputs["attention_mask"][:, -1] == 1).all()  # rows differ in length, padded on the left
    batched = backend.caption(photos, prompts)
    singles = [backend.caption([im], [p])[0] for im, p in zip(photos, prompts)]
    assert batched == singles


def test_right_padding_would_break_the_batch(tiny_folders, photos):
    """The control for the test above: the same batch padded on the right comes out different."""
    b = HFBackend(config(str(tiny_folders["llava"])))
    b.setup(ENV)
    prompts = prompts_for(len(photos))
    singles = [b.caption([im], [p])[0] for im, p in zip(photos, prompts)]
    b.processor.tokenizer.padding_side = "right"
    assert b.caption(photos, prompts) != singles


def test_bfloat16_on_cpu(tiny_folders, photos):
    b = HFBackend(config(str(tiny_folders["llava"])))
    b.setup(BackendEnv("cpu", 1, "bfloat16"))
    assert b.model.dtype == torch.bfloat16
    got = b.caption(photos[:2], prompts_for(2))
    assert len(got) == 2 and all(isinstance(t, str) and t for t in got)


def test_chat_template_file_for_a_model_without_one(tiny_folders, tmp_path, photos):
    folder = tmp_path / "no-template"
    shutil.copytree(tiny_folders["llava"], folder)
    (folder / "chat_template.jinja").unlink()
    line = check(config(str(folder)))
    assert line and "model.chat_template" in line and "\n" not in line
    with pytest.raises(base.CaptionUnavailable, match="model.chat_template"):
        HFBackend(config(str(folder))).setup(ENV)
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}Q: {% for p in m['content'] %}{% if p['type'] == 'image' %}<image>"
                        "{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endfor %} A:")
    line = check(config(str(folder), chat_template=str(tmp_path / "missing.jinja")))
    assert line and "missing.jinja" in line and "no such file" in line
    cfg = config(str(folder), chat_template=str(template))
    assert check(cfg) is None
    b = HFBackend(cfg)
    b.setup(ENV)
    assert b.processor.apply_chat_template(b.messages("hi"), add_generation_prompt=True) == "Q: <image>hi A:"
    assert all(t for t in b.caption(photos[:2], prompts_for(2)))


def test_chat_template_kept_in_tokenizer_config(tiny_folders, tmp_path, photos):
    """Older snapshots carry the template in tokenizer_config.json only."""
    import json

    folder = tmp_path / "old-layout"
    shutil.copytree(tiny_folders["llava"], folder)
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config, "chat_template": template}))
    assert check(config(str(folder))) is None
    b = HFBackend(config(str(folder)))
    b.setup(ENV)
    assert b.processor.chat_template == template
    assert all(t for t in b.caption(photos[:2], prompts_for(2)))


def test_check_local_folder_problems(tiny_folders, tmp_path):
    line = check(config(str(tmp_path / "nowhere")))
    assert line.startswith(f"model.id {tmp_path / 'nowhere'}: no such folder") and "\n" not in line
    for gone, says in (("model.safetensors", "no weights"), ("processor_config.json", "no processor config"),
                       ("config.json", "no config.json"), ("tokenizer.json", "no tokenizer")):
        partial = tmp_path / gone
        shutil.copytree(tiny_folders["llava"], partial)
        (partial / gone).unlink()
        if gone == "tokenizer.json":
            (partial / "tokenizer_config.json").unlink()
        line = check(config(str(partial)))
        assert line and says in line and "\n" not in line, (gone, line)


def test_check_hub_id_needs_a_cached_snapshot(tiny_folders, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    line = check(config("Qwen/Qwen2-VL-2B-Instruct", revision="0123abc"))
    assert line.startswith("model.id Qwen/Qwen2-VL-2B-Instruct at revision 0123abc: no local snapshot")
    assert "`hf download Qwen/Qwen2-VL-2B-Instruct --revision 0123abc --local-dir models/Qwen2-VL-2B-Instruct`" in line
    assert "set model.id to that folder" in line and "\n" not in line
    # the same id, in the cache (the layout snapshot_download writes): usable, and its commit is the model_ref's
    commit = "9f1e" * 10
    repo = tmp_path / "hub" / "models--tiny--llava"
    shutil.copytree(tiny_folders["llava"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert check(config("tiny/llava")) is None
    assert check(config("tiny/llava", revision=commit)) is None
    assert "no local snapshot" in check(config("tiny/llava", revision="e" * 40))
    assert HFBackend(config("tiny/llava")).model_ref == f"tiny/llava@{commit}"


def test_check_needs_the_packages(monkeypatch):
    monkeypatch.setattr(base, "missing_packages", lambda *mods: [m for m in mods if m == "transformers"])
    line = check(config("/models/x"))
    assert line == "backend hf needs transformers: pip install 'refinery[caption]'"


def test_model_ref(tiny_folders, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    folder = str(tiny_folders["llava"])
    assert HFBackend(config(folder)).model_ref == folder
    assert HFBackend(config(folder, revision="abc123")).model_ref == f"{folder}@abc123"
    assert HFBackend(config("THUDM/glm-4v-9b", revision="c" * 40)).model_ref == "THUDM/glm-4v-9b@" + "c" * 40
    assert HFBackend(config("THUDM/glm-4v-9b")).model_ref == "THUDM/glm-4v-9b"


def test_caption_refuses_bad_calls(backend, photos):
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        backend.caption(photos[:2], ["x"])
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.caption([photos[0][..., 0]], ["x"])
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.caption([photos[0].astype(np.float32)], ["x"])
    with pytest.raises(RuntimeError, match="before setup"):
        HFBackend(config("/x")).caption(photos[:1], ["x"])
