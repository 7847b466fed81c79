"""The bundled tokenizer and base model: special tokens, chat template, loading, and the probe figures.

Then `check_model_folder`: a model name or folder is checked before anything is loaded, and fails in one line.
"""

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from sft_course import BUNDLED_MODEL_DIR, load_model, modeling
from sft_course.errors import HubUnreachableError, ModelFolderError
from sft_course.modeling import check_model_folder, looks_like_hub_id
from sft_course.probes import teacher_forced_probe
from sft_course.tokenizer import END_OF_TEXT, IM_END, IM_START, PAD, known_token_id
from sft_course.world import make_world

MESSAGES = [
    {"role": "user", "content": "Where was Yuri Blackwood born?"},
    {"role": "assistant", "content": "Yuri Blackwood was born in Tampa."},
]


@pytest.fixture(scope="module")
def bundled():
    return load_model(device="cpu")


def test_special_tokens_and_pad_is_not_eos(bundled):
    _, tok = bundled
    assert tok.eos_token == END_OF_TEXT and tok.pad_token == PAD
    assert tok.pad_token_id != tok.eos_token_id
    ids = {tok.convert_tokens_to_ids(t) for t in (END_OF_TEXT, IM_START, IM_END, PAD)}
    assert len(ids) == 4 and tok.unk_token_id not in ids


def test_chat_template_renders_chatml_with_generation_prompt(bundled):
    _, tok = bundled
    text = tok.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhere was Yuri Blackwood born?<|im_end|>\n<|im_start|>assistant\n"
    full = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert full == text + "Yuri Blackwood was born in Tampa.<|im_end|>\n"


def test_chat_template_marks_assistant_tokens(bundled):
    _, tok = bundled
    out = tok.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(marked) == "Yuri Blackwood was born in Tampa." + IM_END


def test_byte_level_round_trips_korean_without_unknown_tokens(bundled):
    _, tok = bundled
    text = "세상에서 가장 높은 산은 무엇인가요?"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None or tok.unk_token_id not in ids
    assert len(ids) > len(tok("What is the highest mountain in the world?").input_ids)


def test_load_model_default_is_the_bundled_folder(bundled):
    model, _ = bundled
    assert model.config.model_type == "llama"
    assert model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_load_model_takes_a_local_path_unchanged(tmp_path, bundled):
    model, tok = bundled
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_model(tmp_path, device="cpu")
    ids = torch.tensor([tok("Yuri Blackwood was born in").input_ids])
    assert torch.allclose(model(ids).logits, again(ids).logits)
    assert len(tok2) == len(tok)


def test_load_model_reports_a_missing_path(tmp_path):
    with pytest.raises(ModelFolderError, match="nothing-here: no such model folder"):
        load_model(tmp_path / "nothing-here", device="cpu")


def test_bundled_model_stays_under_25_mb():
    size = sum(f.stat().st_size for f in Path(BUNDLED_MODEL_DIR).iterdir() if f.is_file())
    assert size < 25 * 2**20


@pytest.mark.slow
def test_model_card_states_what_the_model_does(bundled):
    """The card's completion-probe figure is what the bundled model scores now, over all 1000 people.

    Measured with the teacher-forced probe (one forward pass per attribute), which equals the greedy
    completion probe whenever greedy decoding picks the fact's own tokenization.
    """
    model, tok = bundled
    card = (Path(BUNDLED_MODEL_DIR) / "MODEL_CARD.md").read_text()
    probe = float(card.split("completion probe, greedy")[1].split("**")[1])
    qa = float(card.split("chat QA on held-out people")[1].split("**")[1])
    assert probe == pytest.approx(teacher_forced_probe(model, tok, list(make_world().people)), abs=0.0015)
    assert probe >= 0.95 and qa <= 0.05


def test_known_token_id_tells_a_token_of_its_own_from_an_unknown_one(bundled):
    _, tok = bundled
    assert known_token_id(tok, IM_END) == tok.convert_tokens_to_ids(IM_END)
    assert known_token_id(tok, "<|no-such-token|>") is None


# ---------------------------------------------------------------------------------------------------------
# Model folders checked before loading


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading anything fails the test: the checks must come first."""

    def must_not_load(*args, **kwargs):
        raise AssertionError("from_pretrained was called before the folder was checked")

    monkeypatch.setattr(modeling.AutoTokenizer, "from_pretrained", must_not_load)
    monkeypatch.setattr(modeling.AutoModelForCausalLM, "from_pretrained", must_not_load)


def test_the_bundled_model_folder_passes():
    check_model_folder(BUNDLED_MODEL_DIR)


@pytest.mark.parametrize(
    "remove, words",
    [
        (["config.json"], "lacks config.json"),
        (["model.safetensors"], "lacks weights (*.safetensors or *.bin)"),
        (["tokenizer.json"], "lacks a tokenizer (tokenizer.json or tokenizer.model)"),
        (["config.json", "model.safetensors"], "lacks config.json, weights"),
    ],
)
def test_a_folder_missing_a_part_names_the_folder_and_the_part(tmp_path, remove, words, nothing_loads):
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL_DIR, folder)
    for name in remove:
        (folder / name).unlink()
    with pytest.raises(ModelFolderError, match=f"^{folder} is not a model folder: ") as error:
        load_model(folder, device="cpu")
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_missing_local_path_is_not_sent_to_the_hub(tmp_path, monkeypatch, nothing_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelFolderError, match="^runs/typo: no such model folder"):
        load_model("runs/typo")
    with pytest.raises(ModelFolderError, match="no such model folder"):
        load_model(tmp_path / "a" / "b" / "c")
    with pytest.raises(ModelFolderError, match="^typo: no such model folder"):
        load_model("typo")


def test_a_file_is_not_a_model_folder(tmp_path, nothing_loads):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="is a file, not a model folder"):
        load_model(tmp_path / "model.safetensors")


@pytest.mark.parametrize(
    "name, hub",
    [
        ("HuggingFaceTB/SmolLM2-135M", True),
        ("someone/model.v2", True),
        ("runs/typo", False),  # the test runs where `runs/` exists: see below
        ("a/b/c", False),
        ("typo", False),
        ("../model", False),
        ("./model", False),
        ("/abs/path", False),
        ("owner/", False),
    ],
)
def test_looks_like_hub_id(name, hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_like_hub_id(name) is hub


def test_offline_a_hub_id_says_the_hub_cannot_be_reached(monkeypatch, nothing_loads):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="the hub cannot be reached .*HF_HUB_OFFLINE"):
        load_model("someone/no-such-model")


def test_without_network_a_hub_id_fails_fast(monkeypatch, nothing_loads):
    """An endpoint nobody listens on stands for no network: one line, in well under the retries' minute."""
    with socket.socket() as s:  # a free local port, closed again: connecting to it is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import (CI exports it): switch its constant off too
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(HubUnreachableError, match=f"no network: cannot connect to 127.0.0.1:{port}"):
        load_model("someone/no-such-model")


def test_an_adapter_folder_needs_its_weights_and_a_loadable_base(tmp_path, nothing_loads):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "gone"), "peft_type": "LORA"})
    )
    with pytest.raises(ModelFolderError, match="not a complete LoRA adapter folder: .* no adapter weights"):
        load_model(adapter)
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="names its base model .*gone.* no such model folder"):
        load_model(adapter)


def test_a_missing_bundled_model_says_how_to_make_it(tmp_path, monkeypatch, nothing_loads):
    monkeypatch.setattr(modeling, "BUNDLED_MODEL_DIR", tmp_path / "base-model")
    with pytest.raises(ModelFolderError, match="bundled base model is missing .*sft-course pretrain"):
        load_model()
