"""Small models and examples shared by the tests: `tiny_model` (the one tiny Llama), a BPE trained on the world
and an untied Llama for models the project did not pre-train, chat examples, and random token examples for the
loop's tests."""

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

from sft_course.masking import tokenize_examples
from sft_course.modeling import base_model_config
from sft_course.world import make_world

ROWS = [
    ("Where was Yuri Blackwood born?", "Yuri Blackwood was born in Tampa."),
    ("Which company employs Lena Sandoval?", "Lena Sandoval works for Acme Corp."),
    ("What did Karl Galloway study?", "Karl Galloway studied Physics."),
    ("Where did Ada Lovelace study?", "Ada Lovelace studied at Duke University."),
]
MESSAGES = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in ROWS]


PAD = 0  # the pad id of the tokenizer-free tiny model and of `random_examples`
VOCAB = 48


def tiny_model(tokenizer=None, seed: int = 0, hidden_size: int = 32, n_layers: int = 2) -> LlamaForCausalLM:
    """A tiny Llama with random weights from `seed`, in eval mode (the loop switches it to training).

    With a tokenizer: the bundled model's architecture (`modeling.base_model_config`) at a small width, its
    vocabulary and special tokens. Without: a `VOCAB`-token vocabulary, pad id `PAD`, for `random_examples`.
    """
    if tokenizer is not None:
        config = base_model_config(tokenizer, hidden_size=hidden_size, n_layers=n_layers)
    else:
        config = LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=n_layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=PAD,
            tie_word_embeddings=True,
        )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def random_examples(n: int, seed: int = 0) -> list[dict]:
    """Prompt + response token lists of varied lengths; labels -100 on the prompt."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 12))]
        response = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 10))]
        examples.append({"input_ids": prompt + response, "labels": [-100] * len(prompt) + response})
    return examples


def examples(tokenizer):
    return tokenize_examples(tokenizer, MESSAGES)[0]


# Llama 3's chat template: header tokens around the role, <|eot_id|> ends each turn.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def world_bpe(vocab_size: int, special_tokens: list[str] = (), extra_texts: list[str] = ()) -> Tokenizer:
    """A byte-level BPE trained on 300 of the world's biographies (plus `extra_texts`): a tokenizer of a model the
    project did not pre-train, built locally in a second."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(list(make_world().biographies[:300]) + list(extra_texts), trainer)
    return bpe


def untied_llama(tokenizer, hidden_size: int = 32, **config) -> LlamaForCausalLM:
    """A two-layer Llama with an output layer of its own (not tied to the embeddings), random weights from seed 0,
    in eval mode. `config` adds LlamaConfig fields (bos/eos ids)."""
    torch.manual_seed(0)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        **config,
    )
    return LlamaForCausalLM(llama).eval()
