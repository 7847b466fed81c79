"""LoRA with PEFT: wrap a model, choose the token rows it trains, merge.

LoRA freezes every weight of the base model and learns, for each targeted linear layer W (d_out x d_in),
a low-rank update W + (alpha / r) * B @ A with A (r x d_in) and B (d_out x r), B starting at zero so that
the wrapped model starts out identical to the base model.

The end-of-turn trap: the chat tokens (`<|im_start|>`, `<|im_end|>`) never occur in pre-training, so their
embedding rows are untrained noise. Full fine-tuning trains those rows; plain LoRA freezes them, and with
tied input/output embeddings the frozen row is also the output row that scores `<|im_end|>`. The model can
then answer correctly and still give the stop token a tiny probability. `add_lora(train_chat_tokens=True)`
(the default) also trains those rows with PEFT's `trainable_token_indices`, which handles tied embeddings:
the output layer is wrapped with an adapter that shares the input embedding's trainable rows.

Counting what LoRA trains and stores is `sft_course.accounting`; measuring the trap is `sft_course.end_of_turn`;
the command line's LoRA options are `sft_course.experiment.resolve_run(...).lora_options(rows)`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from sft_course.defaults import LORA_ALPHA, LORA_RANK
from sft_course.masking import as_messages
from sft_course.modeling import quiet_checkpointing_deprecation
from sft_course.stop_tokens import template_end_of_turn_id
from sft_course.tokenizer import IM_END, IM_START, known_token_id


def chat_token_ids(tokenizer) -> list[int]:
    """Ids of the ChatML tokens `<|im_start|>` and `<|im_end|>` that the tokenizer knows, and of the end-of-turn
    token its chat template writes (`<end_of_turn>`, `<|eot_id|>`, ...), which a base model never trained."""
    ids = [known_token_id(tokenizer, IM_START), known_token_id(tokenizer, IM_END), template_end_of_turn_id(tokenizer)]
    return sorted({i for i in ids if i is not None})


def add_lora(
    model,
    tokenizer,
    rank: int = LORA_RANK,
    alpha: float = LORA_ALPHA,
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
        raise ValueError(
            f"train_tokens must be token ids in [0, {vocab}), got {[i for i in token_ids if not 0 <= i < vocab]}"
        )
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        trainable_token_indices=token_ids or None,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]), quiet_checkpointing_deprecation():
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def new_token_ids(tokenizer, sft_examples: Iterable, pretraining_texts: Iterable[str]) -> list[int]:
    """Token ids that the SFT data uses but the pre-training text never contains: their embeddings are untrained.

    `sft_examples` are rows of any accepted format or lists of messages, rendered with the chat template as
    training sees them. Under plain LoRA such rows stay frozen at their initial values; pass the result to
    `add_lora(train_tokens=...)` to train them.
    """
    seen: set[int] = set()
    for text in pretraining_texts:
        seen.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    used: set[int] = set()
    for item in sft_examples:
        messages = as_messages(item)
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        used.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return sorted(used - seen)


def merge(model: PeftModel):
    """Fold the adapters into the base weights (`merge_and_unload`): a plain model, no inference overhead."""
    return model.merge_and_unload()
