"""Batched generation: the shared prompt prefix run once (`share_prefix=True`) gives the same greedy answers."""

import copy

import pytest
import torch

from sft_course import load_model
from sft_course.generation import common_prefix_length, generate
from sft_course.lora import add_lora
from sft_course.world import ATTRIBUTES, make_world, question

SYSTEM = "You answer questions about people in one sentence."


@pytest.fixture(scope="module")
def bundled():
    return load_model(device="cpu")


def _prompts(tokenizer, n: int, system: str | None = SYSTEM) -> list[str]:
    world = make_world()
    messages = [[{"role": "user", "content": question(p, a)}] for p in world.people[:n] for a in ATTRIBUTES[:1]]
    if system is not None:
        messages = [[{"role": "system", "content": system}, *m] for m in messages]
    return [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]


def test_common_prefix_length_stops_before_the_shortest_prompts_end():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # each row keeps at least one token of its own
    assert common_prefix_length([[1, 2], [3, 4]]) == 0
    assert common_prefix_length([[7, 8, 9]]) == 2


def _completions(n: int, prefix: str = SYSTEM + " About one of them: ") -> list[str]:
    """Prompts the base model continues at length (it answers a chat prompt with a bare ".")."""
    return [f"{prefix}{p.name} was born in" for p in make_world().people[:n]]


@pytest.mark.parametrize("batch_size", [16, 5])
def test_shared_prefix_gives_the_same_greedy_tokens(bundled, batch_size):
    model, tok = bundled
    prompts = _completions(12)
    plain = generate(model, tok, prompts, max_new_tokens=20, batch_size=batch_size)
    shared = generate(model, tok, prompts, max_new_tokens=20, batch_size=batch_size, share_prefix=True)
    assert shared == plain
    assert len({o["text"] for o in plain}) > len(prompts) // 2  # real, varied answers


def test_shared_prefix_on_a_lora_model(bundled):
    model, tok = bundled
    lora = add_lora(copy.deepcopy(model), tok, rank=4, alpha=8, seed=0, train_chat_tokens=False)
    with torch.no_grad():  # B is zero at the start; nonzero, the adapters change every logit
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    prompts = _completions(8)
    plain = generate(lora, tok, prompts, max_new_tokens=16)
    assert plain != generate(model, tok, prompts, max_new_tokens=16)
    assert generate(lora, tok, prompts, max_new_tokens=16, share_prefix=True) == plain


def test_chat_prompts_and_prompts_without_a_common_prefix(bundled):
    model, tok = bundled
    for prompts in (_prompts(tok, 6), _prompts(tok, 6, system=None), _completions(6, prefix="")):
        assert generate(model, tok, prompts, max_new_tokens=8, share_prefix=True) == generate(
            model, tok, prompts, max_new_tokens=8
        )


def test_sampling_with_a_shared_prefix_is_refused(bundled):
    model, tok = bundled
    with pytest.raises(ValueError, match="share_prefix"):
        generate(model, tok, _prompts(tok, 2), do_sample=True, share_prefix=True)
