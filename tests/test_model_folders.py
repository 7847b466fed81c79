"""`check_model_folder`: a model name or folder is checked before anything is loaded, and fails in one line."""

import json
import shutil
import socket

import pytest

from sft_course import modeling
from sft_course.errors import HubUnreachableError, ModelFolderError
from sft_course.modeling import BUNDLED_MODEL_DIR, check_model_folder, load_model, looks_like_hub_id


@pytest.fixture
def nothing_loads(monkeypatch):
    """Loading anything fails the test: the checks must come first."""

    def must_not_load(*args, **kwargs):
        raise AssertionError("from_pretrained was called before the folder was checked")

    monkeypatch.setattr(modeling.AutoTokenizer, "from_pretrained", must_not_load)
    monkeypatch.setattr(modeling.AutoModelForCausalLM, "from_pretrained", must_not_load)


def test_the_bundled_model_folder_passes():
    check_model_folder(BUNDLED_MODEL_DIR)


@pytest.mark.parametrize("remove, words", [
    (["config.json"], "lacks config.json"),
    (["model.safetensors"], "lacks weights (*.safetensors or *.bin)"),
    (["tokenizer.json"], "lacks a tokenizer (tokenizer.json or tokenizer.model)"),
    (["config.json", "model.safetensors"], "lacks config.json, weights"),
])
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


@pytest.mark.parametrize("name, hub", [
    ("HuggingFaceTB/SmolLM2-135M", True),
    ("someone/model.v2", True),
    ("runs/typo", False),  # the test runs where `runs/` exists: see below
    ("a/b/c", False),
    ("typo", False),
    ("../model", False),
    ("./model", False),
    ("/abs/path", False),
    ("owner/", False),
])
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
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with pytest.raises(HubUnreachableError, match=f"no network: cannot connect to 127.0.0.1:{port}"):
        load_model("someone/no-such-model")


def test_an_adapter_folder_needs_its_weights_and_a_loadable_base(tmp_path, nothing_loads):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone"),
                                                             "peft_type": "LORA"}))
    with pytest.raises(ModelFolderError, match="not a complete LoRA adapter folder: .* no adapter weights"):
        load_model(adapter)
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFolderError, match="names its base model .*gone.* no such model folder"):
        load_model(adapter)


def test_a_missing_bundled_model_says_how_to_make_it(tmp_path, monkeypatch, nothing_loads):
    monkeypatch.setattr(modeling, "BUNDLED_MODEL_DIR", tmp_path / "base-model")
    with pytest.raises(ModelFolderError, match="bundled base model is missing .*sft-course pretrain"):
        load_model()
