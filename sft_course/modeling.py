"""The bundled base model: its architecture, where it lives, and loading it (or any other) with `from_pretrained`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerBase

from sft_course.tokenizer import IM_END, PAD

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL_NAME = "data/base-model"  # how a saved adapter names the bundled base: relative, so a clone can move
BUNDLED_MODEL_DIR = REPO_ROOT / BUNDLED_MODEL_NAME


def base_model_config(tokenizer: PreTrainedTokenizerBase, hidden_size: int = 128, n_layers: int = 4) -> LlamaConfig:
    """A small Llama: d=128, 4 layers, 4 heads, MLP 4x, tied input and output embeddings."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
        pad_token_id=tokenizer.pad_token_id,
    )


def pick_device() -> torch.device:
    """CUDA if present, else Apple's MPS, else the CPU: the same notebook runs on a laptop or a GPU box."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_model(name_or_path: str | os.PathLike | None = None, device: str | torch.device | None = None):
    """Return `(model, tokenizer)` for the bundled base model, any local folder or hub id, or a saved adapter.

    `name_or_path=None` means the bundled model under `data/base-model`; anything else is handed to
    `from_pretrained` unchanged (e.g. "HuggingFaceTB/SmolLM2-135M" on a machine that can reach the hub). A
    folder with an `adapter_config.json` (what `sft-course sft --method lora` saves) loads its base model
    and puts the LoRA adapter on it.
    """
    if name_or_path is None:
        name_or_path = BUNDLED_MODEL_DIR
        if not (BUNDLED_MODEL_DIR / "config.json").exists():
            raise FileNotFoundError(
                f"the bundled base model is missing from {BUNDLED_MODEL_DIR}: "
                "run `sft-course pretrain --out data/base-model` or check out the repository's data/ folder"
            )
    if (Path(name_or_path) / "adapter_config.json").exists():
        return _load_adapter(name_or_path, device)
    tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.pad_token is None:  # many hub base models ship without one; never reuse EOS for padding
        tokenizer.add_special_tokens({"pad_token": PAD})
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path))
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.to(device or pick_device())
    model.eval()
    return model, tokenizer


def _resolve_base(base: str) -> str:
    """A local base path as written (relative to the working directory), else relative to this repository
    (`data/base-model` from a notebook in `notebooks/`), else unchanged: a hub id for `from_pretrained`."""
    if Path(base).exists() or not (REPO_ROOT / base).exists():
        return base
    return str(REPO_ROOT / base)


def save_model(model, tokenizer, folder: str | os.PathLike) -> Path:
    """Save a fine-tuned model, or only its LoRA adapter, with the tokenizer, so `load_model(folder)` loads it.

    An adapter on the bundled model records its base as `data/base-model`, relative to the repository,
    instead of this machine's absolute path, so the adapter still loads after the clone is moved or copied.
    """
    folder = Path(folder)
    config = getattr(model, "peft_config", {}).get("default")
    recorded = config.base_model_name_or_path if config is not None else None
    if recorded and Path(recorded).resolve() == BUNDLED_MODEL_DIR.resolve():
        config.base_model_name_or_path = BUNDLED_MODEL_NAME
    try:
        model.save_pretrained(folder)
    finally:
        if recorded:
            config.base_model_name_or_path = recorded
    tokenizer.save_pretrained(folder)
    return folder


def _load_adapter(folder: str | os.PathLike, device: str | torch.device | None = None):
    """A PEFT adapter folder (what `sft-course sft --method lora` saves): its base model, then the adapter.

    The base is `base_model_name_or_path` of `adapter_config.json`; the tokenizer is the folder's own when
    it was saved there. Returns `(PeftModel, tokenizer)`, adapters not merged.
    """
    from peft import PeftConfig, PeftModel

    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if not base:
        raise ValueError(f"{Path(folder) / 'adapter_config.json'}: base_model_name_or_path is empty, so the base "
                         "model to put the adapter on is unknown")
    model, tokenizer = load_model(_resolve_base(base), device)
    if (Path(folder) / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer
