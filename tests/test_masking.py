"""Loss masks: -100 on every prompt token, the response and its <|im_end|> are targets, nothing else."""

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sft_course.masking import (
    IGNORE_INDEX,
    ExampleTooLongError,
    NoTargetTokensError,
    tokenize_example,
    tokenize_examples,
)
from sft_course.tokenizer import CHAT_TEMPLATE, IM_END

MESSAGES = [
    {"role": "user", "content": "Where was Yuri Blackwood born?"},
    {"role": "assistant", "content": "Yuri Blackwood was born in Tampa."},
]

# Text a learner might write, Korean and newlines included; no "<" so that no special token is spelled out.
TEXT = st.text(
    alphabet=st.sampled_from(
        list("abcdefghijklmnopqrstuvwxyz ABCXYZ.,?!'\n0123456789") + list("세상에서가장높은산행복")
    ),
    min_size=1,
    max_size=40,
)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def target_span(labels):
    """Indices of the tokens in the loss; they must form one contiguous block."""
    positions = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert positions == list(range(positions[0], positions[-1] + 1)), "targets are not one contiguous block"
    return positions[0], positions[-1] + 1


def test_prompt_masked_response_and_im_end_are_targets(tokenizer):
    example = tokenize_example(tokenizer, MESSAGES)
    ids, labels = example["input_ids"], example["labels"]
    start, end = target_span(labels)
    assert tokenizer.decode(ids[:start]) == (
        "<|im_start|>user\nWhere was Yuri Blackwood born?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(ids[start:end]) == "Yuri Blackwood was born in Tampa." + IM_END
    assert ids[end - 1] == tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.decode(ids[end:]) == "\n" and labels[end:] == [IGNORE_INDEX]


@FAST
@given(system=st.none() | TEXT, user=TEXT, response=TEXT)
def test_labels_equal_input_ids_exactly_on_the_response(tokenizer, system, user, response):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user},
        {"role": "assistant", "content": response},
    ]
    example = tokenize_example(tokenizer, messages)
    ids, labels = example["input_ids"], example["labels"]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert ids == tokenizer(full, add_special_tokens=False)["input_ids"]
    start, end = target_span(labels)
    assert labels[start:end] == ids[start:end]
    assert tokenizer.decode(ids[start:end]) == response + IM_END
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(ids[:start]) == prompt
    assert all(label == IGNORE_INDEX for label in labels[:start] + labels[end:])


@FAST
@given(user=TEXT, response=TEXT, max_length=st.integers(1, 60))
def test_over_length_never_cuts_the_response(tokenizer, user, response, max_length):
    messages = [{"role": "user", "content": user * 2}, {"role": "assistant", "content": response}]
    full = tokenize_example(tokenizer, messages)
    n_targets = sum(label != IGNORE_INDEX for label in full["labels"])
    try:
        cut = tokenize_example(tokenizer, messages, max_length=max_length)
    except ExampleTooLongError:
        prompt_length = full["labels"].index(next(x for x in full["labels"] if x != IGNORE_INDEX))
        assert len(full["input_ids"]) - prompt_length >= max_length
        return
    assert len(cut["input_ids"]) <= max_length
    assert cut["input_ids"] == full["input_ids"][-len(cut["input_ids"]) :]  # cut from the left: prompt side
    assert cut["labels"] == full["labels"][-len(cut["labels"]) :]
    assert sum(label != IGNORE_INDEX for label in cut["labels"]) == n_targets
    assert cut["labels"][0] == IGNORE_INDEX  # some prompt is left


def test_tokenize_examples_counts_truncated_and_dropped(tokenizer):
    short = {"instruction": "Where was Yuri Blackwood born?", "response": "Tampa"}
    long_prompt = {"instruction": "Where was Yuri Blackwood born? " * 10, "response": "Tampa"}
    long_response = {"instruction": "Where?", "response": "Yuri Blackwood was born in Tampa. " * 10}
    examples, report = tokenize_examples(tokenizer, [short, long_prompt, long_response, MESSAGES], max_length=40)
    assert report == {"input": 4, "kept": 3, "truncated_prompt": 1, "dropped_too_long": 1, "dropped_no_target": 0}
    assert len(examples) == 3 and all(len(e["input_ids"]) <= 40 for e in examples)
    assert all(any(label != IGNORE_INDEX for label in e["labels"]) for e in examples)


def test_example_without_targets_never_reaches_the_loss(tokenizer):
    no_end_token = copy.deepcopy(tokenizer)
    no_end_token.chat_template = CHAT_TEMPLATE.replace(
        " + '<|im_end|>' }}{% endgeneration %}", " }}{% endgeneration %}"
    )
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]
    with pytest.raises(NoTargetTokensError):
        tokenize_example(no_end_token, messages)
    examples, report = tokenize_examples(no_end_token, [messages, MESSAGES])
    assert report["dropped_no_target"] == 1 and len(examples) == 1


def test_masks_do_not_need_generation_markers(tokenizer):
    """A hub template without {% generation %} gives the same labels: the prompt is found by rendering it."""
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    assert tokenize_example(plain, MESSAGES) == tokenize_example(tokenizer, MESSAGES)


def test_a_template_that_renders_the_prompt_differently_is_an_error(tokenizer):
    odd = copy.deepcopy(tokenizer)
    odd.chat_template = CHAT_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\nSure: '")
    with pytest.raises(ValueError, match="renders the prompt"):
        tokenize_example(odd, MESSAGES)


def test_last_message_must_be_the_assistants(tokenizer):
    with pytest.raises(ValueError, match="last message"):
        tokenize_example(tokenizer, MESSAGES[:1])


def target_blocks(labels):
    """The contiguous runs of target positions, as (start, end) pairs."""
    blocks, start = [], None
    for i, label in enumerate(labels + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            blocks.append((start, i))
            start = None
    return blocks


def test_multi_turn_trains_every_assistant_turn(tokenizer):
    messages = MESSAGES + [
        {"role": "user", "content": "And where did Yuri Blackwood study?"},
        {"role": "assistant", "content": "Yuri Blackwood studied at MIT."},
    ]
    example = tokenize_example(tokenizer, messages)
    blocks = target_blocks(example["labels"])
    assert [tokenizer.decode(example["input_ids"][a:b]) for a, b in blocks] == [
        "Yuri Blackwood was born in Tampa." + IM_END,
        "Yuri Blackwood studied at MIT." + IM_END,
    ]


def test_loss_mask_view_brackets_exactly_the_targets(tokenizer):
    from sft_course.masking import loss_mask_view

    example = tokenize_example(tokenizer, MESSAGES)
    view = loss_mask_view(tokenizer, example)
    n_targets = sum(label != IGNORE_INDEX for label in example["labels"])
    assert [t for t, trained in view.tokens if trained] == [
        tokenizer.decode([i]) for i, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX
    ]
    assert len(view.tokens) == len(example["input_ids"])
    body = view.text  # the tokens only; str(view) adds the legend above them
    assert body.count("[") == n_targets and "[<|im_end|>]" in body and "[Yuri]" in body
    assert "[<|im_start|>]" not in body and "<|im_start|>|user|" in body  # the prompt is shown, unbracketed
    assert "legend" in str(view).lower() and body in str(view)
    html = view._repr_html_()
    assert html.count('class="target"') == n_targets and "legend" in html.lower()
    assert "&lt;|im_end|&gt;" in html  # special tokens escaped, not swallowed as HTML tags


def test_loss_mask_view_refuses_labels_of_another_length(tokenizer):
    from sft_course.masking import loss_mask_view

    example = tokenize_example(tokenizer, MESSAGES)
    with pytest.raises(ValueError, match="labels"):
        loss_mask_view(tokenizer, {"input_ids": example["input_ids"], "labels": example["labels"][:-1]})


@FAST
@given(system=st.none() | TEXT, turns=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4))
def test_each_assistant_turn_is_one_target_block(tokenizer, system, turns):
    messages = [{"role": "system", "content": system}] if system else []
    for user, response in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    example = tokenize_example(tokenizer, messages)
    ids, labels = example["input_ids"], example["labels"]
    assert (
        ids == tokenizer(tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    )
    blocks = target_blocks(labels)
    assert [tokenizer.decode(ids[a:b]) for a, b in blocks] == [r + IM_END for _, r in turns]
    assert all(labels[i] == ids[i] for a, b in blocks for i in range(a, b))


def test_multi_turn_masks_match_trl_assistant_only_loss(tokenizer, tmp_path):
    """TRL 1.x, conversational "messages" rows with a system prompt, assistant_only_loss=True (TRL reads the
    template's {% generation %} markers): the same input ids and exactly the same labels, every turn included."""
    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from sft_course.modeling import base_model_config

    conversations = []
    for n_turns in (1, 2, 3):
        messages = [{"role": "system", "content": f"You answer in {n_turns} words."}]
        for t in range(n_turns):
            messages += [
                {"role": "user", "content": f"Where was person {t} born?"},
                {"role": "assistant", "content": f"Person {t} was born in Tampa {t}."},
            ]
        conversations.append(messages)
    ours = [tokenize_example(tokenizer, m) for m in conversations]
    torch.manual_seed(0)
    model = LlamaForCausalLM(base_model_config(tokenizer, hidden_size=32, n_layers=2))
    args = SFTConfig(
        output_dir=str(tmp_path),
        assistant_only_loss=True,
        max_steps=0,
        max_length=256,
        shuffle_dataset=False,
        report_to="none",
        use_cpu=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{"messages": m} for m in conversations]),
        processing_class=tokenizer,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(conversations))])
    for row, mine in enumerate(ours):
        n = len(mine["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == mine["input_ids"]
        assert batch["labels"][row, :n].tolist() == mine["labels"]
        assert len(target_blocks(mine["labels"])) == (row + 1)
