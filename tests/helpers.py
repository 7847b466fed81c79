"""Small models and chat examples shared by the LoRA, accounting and end-of-turn tests."""

import torch
from transformers import LlamaForCausalLM

from sft_course.masking import tokenize_examples
from sft_course.modeling import base_model_config

ROWS = [
    ("Where was Yuri Blackwood born?", "Yuri Blackwood was born in Tampa."),
    ("Which company employs Lena Sandoval?", "Lena Sandoval works for Acme Corp."),
    ("What did Karl Galloway study?", "Karl Galloway studied Physics."),
    ("Where did Ada Lovelace study?", "Ada Lovelace studied at Duke University."),
]
MESSAGES = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in ROWS]


def tiny_model(tokenizer, seed: int = 0, hidden_size: int = 32, n_layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(base_model_config(tokenizer, hidden_size=hidden_size, n_layers=n_layers)).eval()


def examples(tokenizer):
    return tokenize_examples(tokenizer, MESSAGES)[0]
