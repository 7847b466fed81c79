"""Padding, length-grouped batches and packing; packed losses equal unpacked ones; masks match TRL's."""

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaForCausalLM

from sft_course.collate import (
    collate_packed,
    first_fit,
    length_grouped_batches,
    pack_examples,
    packing_fraction,
    pad_batch,
    padding_fraction,
    token_budget_micro_batches,
)
from sft_course.masking import IGNORE_INDEX, tokenize_example
from sft_course.modeling import base_model_config
from sft_course.world import ATTRIBUTES, canonical_sentence, make_world, question

FAST = settings(max_examples=50, deadline=None)
PAD = 3


@st.composite
def token_examples(draw, max_examples=8, max_tokens=20):
    """Tokenized examples: a prompt (-100 labels) then a response (labels = ids), ids never the pad id."""
    examples = []
    for _ in range(draw(st.integers(1, max_examples))):
        prompt = draw(st.lists(st.integers(4, 99), min_size=1, max_size=max_tokens // 2))
        response = draw(st.lists(st.integers(4, 99), min_size=1, max_size=max_tokens // 2))
        examples.append({"input_ids": prompt + response, "labels": [IGNORE_INDEX] * len(prompt) + response})
    return examples


# ---------------------------------------------------------------------------------------------------------
# Padding


@FAST
@given(examples=token_examples(), side=st.sampled_from(["right", "left"]))
def test_pad_batch(examples, side):
    batch = pad_batch(examples, PAD, padding_side=side)
    lengths = [len(e["input_ids"]) for e in examples]
    width = max(lengths)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (len(examples), width)
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    for row, e, n in zip(range(len(examples)), examples, lengths):
        real = slice(0, n) if side == "right" else slice(width - n, width)
        pad = slice(n, width) if side == "right" else slice(0, width - n)
        assert batch["input_ids"][row, real].tolist() == e["input_ids"]
        assert batch["labels"][row, real].tolist() == e["labels"]
        assert batch["attention_mask"][row, real].eq(1).all()
        assert batch["input_ids"][row, pad].eq(PAD).all() and batch["labels"][row, pad].eq(IGNORE_INDEX).all()
        assert batch["attention_mask"][row, pad].eq(0).all()


def test_left_padding_ends_every_prompt_at_the_last_column():
    prompts = [{"input_ids": [5, 6, 7]}, {"input_ids": [8]}]
    batch = pad_batch(prompts, PAD, padding_side="left")
    assert "labels" not in batch
    assert batch["input_ids"].tolist() == [[5, 6, 7], [PAD, PAD, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pad_batch_bad_input():
    with pytest.raises(ValueError, match="padding_side"):
        pad_batch([{"input_ids": [1]}], PAD, padding_side="middle")
    with pytest.raises(ValueError, match="labels"):
        pad_batch([{"input_ids": [1], "labels": [1]}, {"input_ids": [2]}], PAD)
    with pytest.raises(ValueError, match="no examples"):
        pad_batch([], PAD)


# ---------------------------------------------------------------------------------------------------------
# Length-grouped batches


@FAST
@given(
    lengths=st.lists(st.integers(1, 50), min_size=1, max_size=60), batch_size=st.integers(1, 8), seed=st.integers(0, 3)
)
def test_length_grouped_batches(lengths, batch_size, seed):
    batches = length_grouped_batches(lengths, batch_size, seed)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    # The batches hold the lengths of consecutive chunks of the sorted lengths: similar lengths together.
    ordered = sorted(lengths)
    chunks = sorted(ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size))
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == chunks
    assert batches == length_grouped_batches(lengths, batch_size, seed)


def test_length_grouping_wastes_less_padding():
    lengths = [5, 40, 6, 38, 7, 41, 5, 39]
    assert padding_fraction(lengths, 2) == pytest.approx(1 - sum(lengths) / (2 * (40 + 38 + 41 + 39)))
    assert padding_fraction(lengths, 2, group_by_length=True) < 0.1 < padding_fraction(lengths, 2)


# ---------------------------------------------------------------------------------------------------------
# Packing


@FAST
@given(examples=token_examples(max_examples=12), max_length=st.integers(20, 48))
def test_pack_examples(examples, max_length):
    rows = pack_examples(examples, max_length)
    assert sorted(i for r in rows for i in r["example_indices"]) == list(range(len(examples)))
    for r in rows:
        assert len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) <= max_length
        offset = 0
        for i in r["example_indices"]:
            e, n = examples[i], len(examples[i]["input_ids"])
            assert r["input_ids"][offset : offset + n] == e["input_ids"]  # whole, never split
            assert r["position_ids"][offset : offset + n] == list(range(n))  # restart at 0
            assert r["labels"][offset : offset + n] == [IGNORE_INDEX] + e["labels"][1:]
            offset += n
        assert offset == len(r["input_ids"])
    # First fit: the example that opened a row did not fit in any earlier row at the time it was placed
    lengths = [len(e["input_ids"]) for e in examples]
    for k, r in enumerate(rows):
        opener = r["example_indices"][0]
        for earlier in rows[:k]:
            used = sum(lengths[i] for i in earlier["example_indices"] if i < opener)
            assert used + lengths[opener] > max_length


def test_first_fit_and_packing_fraction():
    assert first_fit([3, 6, 2, 4], 8) == [[0, 2], [1], [3]]  # 4 fits neither 3+2=5 (room 3) nor 6 (room 2)
    assert first_fit([3, 3, 2], 8) == [[0, 1, 2]]
    assert packing_fraction([3, 3, 2], 8) == 0
    assert packing_fraction([3, 6, 2, 4], 8) == pytest.approx(1 - 15 / 24)
    with pytest.raises(ValueError, match="more than max_length"):
        first_fit([3, 9], 8)


def test_collate_packed_has_no_attention_mask():
    rows = pack_examples(
        [
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
            {"input_ids": [8, 9], "labels": [-100, 9]},
            {"input_ids": [10, 11, 12, 13], "labels": [-100, -100, 12, 13]},
        ],
        max_length=5,
    )
    batch = collate_packed(rows, PAD)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 12, 13, PAD]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, -100, 12, 13, -100]]


# ---------------------------------------------------------------------------------------------------------
# Packing gives the same losses as no packing


def chat_examples(tokenizer, n_people=3):
    world = make_world()
    return [
        tokenize_example(
            tokenizer,
            [{"role": "user", "content": question(p, a)}, {"role": "assistant", "content": canonical_sentence(p, a)}],
        )
        for p in world.people[:n_people]
        for a in ATTRIBUTES[:3]
    ]


def per_token_losses(logits, labels):
    """Cross-entropy of each next-token prediction (0 where the label is -100), as the model's loss shifts it."""
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none")


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("explicit_mask", [False, True])
def test_packed_batch_gives_the_same_per_token_losses(tokenizer, attention, explicit_mask):
    torch.manual_seed(0)
    config = base_model_config(tokenizer, hidden_size=32, n_layers=2)
    config._attn_implementation = attention
    model = LlamaForCausalLM(config).eval()
    examples = chat_examples(tokenizer)
    rows = pack_examples(examples, max_length=64)
    assert max(len(r["example_indices"]) for r in rows) > 1  # something was packed
    batch = collate_packed(rows, tokenizer.pad_token_id, explicit_mask=explicit_mask)
    with torch.no_grad():
        # Without an explicit mask, transformers detects packing from position_ids only when there is no cache.
        extra = {} if explicit_mask else {"use_cache": False}
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, **extra).logits
        packed_losses = per_token_losses(packed, batch["labels"])
        n_compared = 0
        for r, row in enumerate(rows):
            offset = 0
            for i in row["example_indices"]:
                ids = torch.tensor([examples[i]["input_ids"]])
                labels = torch.tensor([examples[i]["labels"]])
                alone = per_token_losses(model(input_ids=ids).logits, labels)[0]
                n = ids.shape[1]
                assert torch.allclose(packed_losses[r, offset : offset + n - 1], alone, atol=1e-5)
                # and the prediction across the boundary into the next example is not in the loss
                assert offset + n - 1 >= packed_losses.shape[1] or packed_losses[r, offset + n - 1] == 0
                n_compared += int((labels != IGNORE_INDEX).sum())
                offset += n
        # the mean loss over the batch is the same number too
        unpacked_total = sum(
            per_token_losses(model(input_ids=torch.tensor([e["input_ids"]])).logits, torch.tensor([e["labels"]])).sum()
            for e in examples
        )
        assert torch.allclose(packed_losses.sum() / n_compared, unpacked_total / n_compared, atol=1e-5)
        assert n_compared == int((batch["labels"] != IGNORE_INDEX).sum())


def test_without_the_block_mask_packed_examples_would_see_each_other(tokenizer):
    """The control: the same packed row with plain positions (one long sequence) changes the losses."""
    model = tiny_model(tokenizer)
    rows = pack_examples(chat_examples(tokenizer, n_people=1), max_length=64)
    batch = collate_packed(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        leaking = model(input_ids=batch["input_ids"], use_cache=False).logits
    second = len(rows[0]["input_ids"]) - 1  # the last token of the row, after the first example
    assert not torch.allclose(packed[0, second], leaking[0, second], atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Parity with TRL's SFTTrainer


@pytest.mark.slow
def test_masks_match_trl_sft_trainer(tokenizer, tmp_path):
    """TRL 1.x, prompt-completion form, completion_only_loss=True: same input ids; same targets except that TRL's
    completion is everything after the prompt, so it also trains the template's "\\n" after <|im_end|>, which
    the model never needs to produce (generation stops at <|im_end|>). With assistant_only_loss=True (TRL reads
    the template's {% generation %} markers) TRL's labels equal ours exactly."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    world = make_world()
    pairs = [(question(p, a, 1), canonical_sentence(p, a)) for p in world.people[:2] for a in ATTRIBUTES]
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": q}], "completion": [{"role": "assistant", "content": r}]}
            for q, r in pairs
        ]
    )
    ours = [
        tokenize_example(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": r}])
        for q, r in pairs
    ]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    model = tiny_model(tokenizer).train()

    for assistant_only in (False, True):
        args = SFTConfig(
            output_dir=str(tmp_path),
            completion_only_loss=True,
            assistant_only_loss=assistant_only,
            max_steps=0,
            max_length=256,
            shuffle_dataset=False,
            report_to="none",
            use_cpu=True,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        prepared = trainer.train_dataset
        assert len(prepared) == len(ours)
        for trl_row, mine in zip(prepared, ours):
            assert trl_row["input_ids"] == mine["input_ids"]
            if assistant_only:
                assert trl_row["labels"] == mine["labels"]
            else:
                assert mine["input_ids"][-1:] == newline and mine["labels"][-1] == IGNORE_INDEX
                assert trl_row["labels"][:-1] == mine["labels"][:-1]
                assert trl_row["labels"][-1] == newline[0]  # the one difference
        # TRL's collator pads our way too: pad id (not EOS), label -100, attention 0 on the right
        trl_batch = trainer.data_collator([prepared[i] for i in range(len(prepared))])
        our_batch = pad_batch(
            [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in prepared], tokenizer.pad_token_id
        )
        for key in ("input_ids", "labels", "attention_mask"):
            assert torch.equal(trl_batch[key], our_batch[key]), key


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=64), st.integers(1, 4000))
def test_token_budget_micro_batches_cover_each_row_once_within_the_budget(lengths, max_tokens):
    groups = token_budget_micro_batches(lengths, max_tokens)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # nothing lost, nothing twice
    for g in groups:
        padded = len(g) * max(lengths[i] for i in g)
        assert padded <= max_tokens or len(g) == 1  # a row longer than the budget goes alone


def test_token_budget_micro_batches_keep_short_rows_away_from_long_ones():
    lengths = [30, 120, 30, 30, 120, 30]  # QA rows and JSON rows of one step, mixed
    groups = token_budget_micro_batches(lengths, 240)
    assert groups == [[0, 2, 3, 5], [1, 4]]  # padded slots 4 x 30 + 2 x 120 = 360 instead of 6 x 120 = 720
    with pytest.raises(ValueError, match="max_tokens"):
        token_budget_micro_batches(lengths, 0)
