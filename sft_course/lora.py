"""LoRA with PEFT: wrap a model, count what it trains and stores, show the end-of-turn trap, merge.

LoRA freezes every weight of the base model and learns, for each targeted linear layer W (d_out x d_in),
a low-rank update W + (alpha / r) * B @ A with A (r x d_in) and B (d_out x r), B starting at zero so that
the wrapped model starts out identical to the base model.

The end-of-turn trap: the chat tokens (`<|im_start|>`, `<|im_end|>`) never occur in pre-training, so their
embedding rows are untrained noise. Full fine-tuning trains those rows; plain LoRA freezes them, and with
tied input/output embeddings the frozen row is also the output row that scores `<|im_end|>`. The model can
then answer correctly and still give the stop token a tiny probability. `add_lora(train_chat_tokens=True)`
(the default) also trains those rows with PEFT's `trainable_token_indices`, which handles tied embeddings:
the output layer is wrapped with an adapter that shares the input embedding's trainable rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from sft_course.masking import tokenize_example
from sft_course.tokenizer import IM_END, IM_START
from sft_course.training import per_token_loss

ADAM_STATES_PER_PARAM = 2  # AdamW keeps exp_avg and exp_avg_sq for each trainable parameter
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def chat_token_ids(tokenizer) -> list[int]:
    """Ids of the ChatML tokens `<|im_start|>` and `<|im_end|>` that the tokenizer knows."""
    ids = []
    for token in (IM_START, IM_END):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            ids.append(token_id)
    return ids


def add_lora(
    model,
    tokenizer,
    rank: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    train_chat_tokens: bool | None = None,
    train_tokens: Iterable[int] = (),
    seed: int = 0,
) -> PeftModel:
    """Wrap `model` with LoRA adapters (rank `rank`, scale `alpha / rank`) on `target_modules`.

    "all-linear" means every linear layer of the transformer blocks (attention and MLP), not the output
    layer. With `train_chat_tokens`, the embedding rows of `<|im_start|>` and `<|im_end|>` are trained too
    (tied to the output layer when the model ties them): the fix for the end-of-turn trap. The default
    (None) trains them where the tokenizer has them (a Llama-3-style template has other turn tokens). The random
    initialisation of the A matrices is drawn from `seed`, without touching the global random state.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    token_ids = sorted(set(int(i) for i in train_tokens))
    if train_chat_tokens or train_chat_tokens is None:
        chat_ids = chat_token_ids(tokenizer)
        if not chat_ids and train_chat_tokens is not None:  # None (default): only where the tokenizer has them
            raise ValueError(f"train_chat_tokens=True but the tokenizer has neither {IM_START} nor {IM_END}")
        token_ids = sorted(set(token_ids) | set(chat_ids))
    vocab = model.get_input_embeddings().weight.shape[0]
    if any(not 0 <= i < vocab for i in token_ids):
        raise ValueError(f"train_tokens must be token ids in [0, {vocab}), got {[i for i in token_ids if not 0 <= i < vocab]}")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        trainable_token_indices=token_ids or None,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def new_token_ids(tokenizer, sft_examples: Iterable, pretraining_texts: Iterable[str]) -> list[int]:
    """Token ids that the SFT data uses but the pre-training text never contains: their embeddings are untrained.

    `sft_examples` are rows of any accepted format or lists of messages, rendered with the chat template as
    training sees them. Under plain LoRA such rows stay frozen at their initial values; pass the result to
    `add_lora(train_tokens=...)` to train them.
    """
    from sft_course.data import to_messages

    seen: set[int] = set()
    for text in pretraining_texts:
        seen.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    used: set[int] = set()
    for item in sft_examples:
        messages = item if isinstance(item, list) else to_messages(item)
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        used.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sorted(used - seen)


def default_lora_options(rank: int = 8, alpha: float = 16, sft_rows: Iterable | None = None,
                         model_name: str | os.PathLike | None = None) -> dict:
    """The LoRA options of `sft-course sft --method lora`: rank, alpha, and which embedding rows to train.

    For the bundled model, whose pre-training text is known (the world's biographies), every token that the
    SFT rows use and pre-training never did gets a trainable row (`new_token_ids`): the chat tokens and, with
    this small BPE vocabulary, the pieces of the question words ("When", "Where", ...). For any other model
    only the chat tokens (`add_lora`'s default), since its pre-training text is unknown.
    """
    from transformers import AutoTokenizer

    from sft_course.modeling import BUNDLED_MODEL_DIR
    from sft_course.world import make_world

    options = {"rank": rank, "alpha": alpha}
    bundled = model_name is None or Path(model_name).resolve() == BUNDLED_MODEL_DIR.resolve()
    if bundled and sft_rows is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(BUNDLED_MODEL_DIR))
        options["train_tokens"] = new_token_ids(tokenizer, sft_rows, make_world().biographies)
    return options


def trainable_parameters(model) -> int:
    """Parameters that receive gradients (and optimizer state)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def total_parameters(model) -> int:
    """All distinct parameters (tied ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def optimizer_state_bytes(model, states_per_param: int = ADAM_STATES_PER_PARAM) -> int:
    """Bytes of AdamW state for `model`'s trainable parameters: two tensors per parameter, its dtype each.

    Mixed-precision training keeps fp32 master copies on top of this; the course trains in fp32.
    """
    return sum(states_per_param * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def saved_activation_bytes(model, batch: dict) -> int:
    """Bytes of the tensors that the forward pass of `batch` keeps for the backward pass (activations).

    Counted with `torch.autograd.graph.saved_tensors_hooks`, each storage once, the model's own parameters
    and buffers excluded (they are counted as weights). Works the same on any device.
    """
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    device = next(model.parameters()).device
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        loss = per_token_loss(out.logits, batch["labels"].to(device)).sum()
    del out, loss
    return sum(saved.values())


def training_memory_bytes(model, batch: dict) -> dict:
    """What one AdamW training step on `batch` holds, tensor by tensor: weights, gradients, optimizer, activations.

    A count, not a measurement of the process: the allocator, the framework and temporary buffers add to it.
    On a GPU compare with `torch.cuda.max_memory_allocated()`.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    parts = {"weights": weights, "gradients": gradients, "optimizer": optimizer_state_bytes(model),
             "activations": saved_activation_bytes(model, batch)}
    return {**parts, "total": sum(parts.values())}


def adapter_size_bytes(folder: str | os.PathLike) -> int:
    """Size on disk of the adapter weights that `PeftModel.save_pretrained(folder)` wrote."""
    for name in ADAPTER_WEIGHT_FILES:
        path = Path(folder) / name
        if path.exists():
            return path.stat().st_size
    raise FileNotFoundError(f"no adapter weights ({' or '.join(ADAPTER_WEIGHT_FILES)}) in {folder}")


def weights_size_bytes(folder: str | os.PathLike) -> int:
    """Size on disk of every weight file (`*.safetensors`, `*.bin`) in a saved model folder."""
    files = [p for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin")]
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {folder}")
    return sum(p.stat().st_size for p in files)


@torch.no_grad()
def per_token_answer_loss(model, tokenizer, messages: list[dict]) -> list[tuple[str, float]]:
    """Loss (nats) of each target token (every assistant message), `<|im_end|>` included, in order."""
    example = tokenize_example(tokenizer, messages)
    input_ids = torch.tensor([example["input_ids"]], device=model.device)
    labels = torch.tensor([example["labels"]], device=model.device)
    was_training = model.training
    model.eval()
    losses = per_token_loss(model(input_ids=input_ids).logits, labels)[0]
    model.train(was_training)
    targets = labels[0, 1:]
    keep = targets != -100
    tokens = tokenizer.convert_ids_to_tokens(targets[keep].tolist())
    return [(tokenizer.convert_tokens_to_string([t]) if t not in (IM_START, IM_END) else t, float(v))
            for t, v in zip(tokens, losses[keep].tolist())]


def end_of_turn_loss(model, tokenizer, messages_list: list[list[dict]]) -> dict:
    """Mean loss of `<|im_end|>` and of the other answer tokens over many examples, and the worst other token."""
    im_end, other = [], []
    for messages in messages_list:
        for token, loss in per_token_answer_loss(model, tokenizer, messages):
            (im_end if token == IM_END else other).append(loss)
    if not im_end:
        raise ValueError(f"no {IM_END} target in the examples: the chat template does not end the answer with it")
    return {
        "im_end_loss": sum(im_end) / len(im_end),
        "im_end_probability": float(torch.tensor(im_end).neg().exp().mean()),
        "other_loss": sum(other) / len(other),
        "other_loss_max": max(other),
    }


def merge(model: PeftModel):
    """Fold the adapters into the base weights (`merge_and_unload`): a plain model, no inference overhead."""
    return model.merge_and_unload()
