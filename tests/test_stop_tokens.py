"""End of turn read from the chat template: ChatML, Gemma-style and base-Llama-3-style tiny local models stop
at their own end-of-turn token after a short SFT, as often as ChatML does."""

import pytest
from helpers import LLAMA3_TEMPLATE, untied_llama, world_bpe
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from sft_course.experiment import finetune
from sft_course.generation import chat_prompt, generate
from sft_course.masking import tokenize_examples
from sft_course.modeling import prepare_for_chat
from sft_course.stop_tokens import end_of_turn_id, end_of_turn_ids, stop_token_ids, template_end_of_turn_id
from sft_course.tokenizer import CHAT_TEMPLATE
from sft_course.world import ATTRIBUTES, TRAIN_SPLIT, canonical_sentence, make_world, question

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
STYLES = {
    # special tokens, bos, eos, pad, template, the end of turn the template writes
    "chatml": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"],
        None,
        "<|endoftext|>",
        "<|pad|>",
        CHAT_TEMPLATE,
        "<|im_end|>",
    ),
    "gemma": (
        ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<eos>",
        "<pad>",
        GEMMA_TEMPLATE,
        "<end_of_turn>",
    ),
    "llama3_base": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|end_of_text|>",
        None,
        LLAMA3_TEMPLATE,
        "<|eot_id|>",
    ),
}


def _rows(n_people: int, offset: int = 0):
    people = make_world().split(TRAIN_SPLIT)[offset : offset + n_people]
    return [
        {"instruction": question(p, a, 0), "response": canonical_sentence(p, a)} for p in people for a in ATTRIBUTES
    ]


@pytest.fixture(scope="module")
def bpe():
    return world_bpe(500, extra_texts=[r["instruction"] for r in _rows(40)]).to_str()


def _tokenizer(bpe, style: str) -> PreTrainedTokenizerFast:
    specials, bos, eos, pad, template, _ = STYLES[style]
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(bpe), model_max_length=256)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.bos_token, tokenizer.eos_token = bos, eos
    if pad is not None:
        tokenizer.pad_token = pad
    tokenizer.chat_template = template
    return tokenizer


@pytest.mark.parametrize("style", STYLES)
def test_the_template_names_its_end_of_turn(bpe, style):
    tokenizer = _tokenizer(bpe, style)
    expected = tokenizer.convert_tokens_to_ids(STYLES[style][-1])
    assert template_end_of_turn_id(tokenizer) == end_of_turn_id(tokenizer) == expected
    assert expected in end_of_turn_ids(tokenizer) and tokenizer.eos_token_id in end_of_turn_ids(tokenizer)
    assert stop_token_ids(tokenizer)[:2] == [expected, tokenizer.eos_token_id] or expected == tokenizer.eos_token_id


def test_generation_config_eos_ids_are_stops_too(bpe):
    tokenizer = _tokenizer(bpe, "gemma")
    extra = tokenizer.convert_tokens_to_ids("<start_of_turn>")
    model = untied_llama(tokenizer, hidden_size=64, eos_token_id=[tokenizer.eos_token_id, extra])
    assert stop_token_ids(tokenizer, model) == [
        tokenizer.convert_tokens_to_ids("<end_of_turn>"),
        tokenizer.eos_token_id,
        extra,
    ]


def test_no_template_or_no_special_token_falls_back_to_eos(bpe):
    tokenizer = _tokenizer(bpe, "gemma")
    tokenizer.chat_template = None
    assert template_end_of_turn_id(tokenizer) is None and end_of_turn_id(tokenizer) == tokenizer.eos_token_id
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert template_end_of_turn_id(tokenizer) is None
    tokenizer.chat_template = "{{ raise_exception('no') }}"
    assert template_end_of_turn_id(tokenizer) is None


def _stop_rate_after_sft(bpe, style: str) -> tuple[float, list[dict]]:
    tokenizer = _tokenizer(bpe, style)
    # The model's config knows only the EOS, as a base model's does.
    model = untied_llama(tokenizer, hidden_size=64, eos_token_id=[tokenizer.eos_token_id])
    prepare_for_chat(model, tokenizer)
    examples, _ = tokenize_examples(tokenizer, _rows(24))
    model, _ = finetune(model, tokenizer, examples, steps=120, lr=3e-3, batch_size=16, seed=0)
    model.eval()
    prompts = [chat_prompt(tokenizer, r["instruction"]) for r in _rows(4, offset=100)]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=24)
    return sum(o["stopped"] for o in outputs) / len(outputs), outputs


@pytest.mark.slow  # three short SFT runs of tiny models: about 20 s
def test_every_style_stops_at_its_end_of_turn_as_often_as_chatml(bpe):
    rates = {}
    for style in STYLES:
        rates[style], outputs = _stop_rate_after_sft(bpe, style)
        stopped = [o for o in outputs if o["stopped"]]
        assert all(o["stop_token"] == STYLES[style][-1] for o in stopped), (style, outputs[:3])
        assert all(STYLES[style][-1] not in o["text"] for o in outputs)
    assert rates["chatml"] >= 0.85, rates  # before the end of turn came from the template, the others stopped 0.0
    assert rates["gemma"] >= rates["chatml"] - 0.1 and rates["llama3_base"] >= rates["chatml"] - 0.1, rates
