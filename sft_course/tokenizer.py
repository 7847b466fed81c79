"""A byte-level BPE tokenizer for the world's biographies, with ChatML special tokens and a chat template."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"  # ends a pre-training document; the base model's EOS
IM_START = "<|im_start|>"  # opens a chat turn (ChatML)
IM_END = "<|im_end|>"  # ends a chat turn; SFT teaches the model to emit it and stop
PAD = "<|pad|>"  # padding only: never the EOS, so masking padding can never mask the real stop token
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END, PAD)

# ChatML, as Qwen and SmolLM2 use it. The {% generation %} block marks the assistant's tokens (content and
# <|im_end|>) so that `apply_chat_template(..., return_assistant_tokens_mask=True)` can build loss masks.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Words of the chat format added to the tokenizer's training text (not to pre-training), so that role names
# are whole tokens rather than strings of bytes.
CHAT_WORDS = ("system\n", "user\n", "assistant\n")


def known_token_id(tokenizer, token: str) -> int | None:
    """The id of `token` when the tokenizer has it as a token of its own, else None (not the unknown token's id)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return token_id


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it as a `PreTrainedTokenizerFast`.

    Byte level means every UTF-8 string can be encoded, Korean included: unseen characters fall back to
    their bytes, one token per byte, which is why text unlike the training data costs many more tokens.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts) + list(CHAT_WORDS) * 100, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=END_OF_TEXT,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=256,
        padding_side="right",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


CHATML_MESSAGE = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
CHATML_MARKED = (
    "{% if message['role'] == 'assistant' %}{{'<|im_start|>assistant\n'}}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{'\n'}}{% else %}" + CHATML_MESSAGE + "{% endif %}"
)


def with_generation_markers(tokenizer):
    """A copy of `tokenizer` whose ChatML template marks the assistant's content and `<|im_end|>` with
    `{% generation %}`, which TRL's `assistant_only_loss` needs (SmolLM2's template has none; notebook 08 does the
    same): the targets are then the course's (`masking`). A template that has markers already is kept."""
    if "{% generation %}" in tokenizer.chat_template:
        return tokenizer
    if CHATML_MESSAGE not in tokenizer.chat_template:
        raise ValueError("the chat template has no {% generation %} markers and is not SmolLM2's ChatML: mark it")
    marked = copy.deepcopy(tokenizer)
    marked.chat_template = tokenizer.chat_template.replace(CHATML_MESSAGE, CHATML_MARKED)
    return marked
