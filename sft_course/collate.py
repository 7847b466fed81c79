"""Turning tokenized examples into batches: dynamic padding, length-grouped batches and micro-batches, and packing.

Padding wastes compute on pad slots; grouping similar lengths wastes fewer; packing puts several examples in
one row and wastes almost none. Packed rows carry `position_ids` that restart at 0 for each example and no
`attention_mask`: transformers (>= 5, `masking_utils.find_packed_sequence_indices`) then detects the packed
format from the position ids and builds a block-diagonal causal mask, so no token attends across examples.

One trap, checked in tests/test_collate.py: transformers only looks for packed sequences when the forward pass
has no cache, and a Llama config says `use_cache=True`, which makes even a training forward build one. So call
the model with `use_cache=False` (or set `model.config.use_cache = False`), or ask `collate_packed` for an
explicit 4D mask, which works with or without a cache.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from sft_course.masking import IGNORE_INDEX


def _check_padding_side(padding_side: str) -> None:
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")


def pad_batch(examples: Sequence[dict], pad_token_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad examples to the longest one; return `input_ids`, `attention_mask` and (if given) `labels` tensors.

    Padding gets `pad_token_id`, attention 0 and label -100. Right padding is for training; left padding is for
    batched generation, where every prompt must end at the last column so that new tokens follow it directly.
    Examples without `labels` (prompts to generate from) give a batch without `labels`.
    """
    _check_padding_side(padding_side)
    if not examples:
        raise ValueError("pad_batch: no examples")
    with_labels = ["labels" in e for e in examples]
    if any(with_labels) and not all(with_labels):
        raise ValueError("pad_batch: either every example has labels or none has")
    width = max(len(e["input_ids"]) for e in examples)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for e in examples:
        n = len(e["input_ids"])
        if with_labels[0] and len(e["labels"]) != n:
            raise ValueError(f"pad_batch: an example has {n} input_ids but {len(e['labels'])} labels")
        rows = {"input_ids": (list(e["input_ids"]), pad_token_id), "attention_mask": ([1] * n, 0)}
        if with_labels[0]:
            rows["labels"] = (list(e["labels"]), IGNORE_INDEX)
        for key, (values, fill) in rows.items():
            padding = [fill] * (width - n)
            batch[key].append(values + padding if padding_side == "right" else padding + values)
    return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items() if rows}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int = 0) -> list[list[int]]:
    """Batches of indices with similar lengths (less padding), in a seeded random order; each index once.

    Indices are shuffled first so that equal lengths are not always grouped the same way, then sorted by
    length and cut into batches; the order of the batches is then shuffled so that training does not see
    short examples first and long ones last.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])  # stable: ties keep their shuffled order
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def token_budget_micro_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """One optimizer step's rows (their `lengths`) split into micro-batches of similar lengths, each at most
    `max_tokens` padded slots (rows x its longest row); a row longer than that goes alone.

    The step's gradient does not change: the loss is normalised by the whole step's target tokens
    (`loss.accumulate_step`), so only the padding does. A step that mixes short QA rows with long JSON rows pads
    every row to the longest when it is one batch; split this way, the short rows pad among themselves.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # sorted by length, the row joining a group is its longest: the padded size is (rows + 1) x its length
        if groups and (len(groups[-1]) + 1) * lengths[i] <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def first_fit(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Greedy first-fit bins: each index goes into the first row with room for it, in the given order."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(
                f"example {i} has {n} tokens, more than max_length={max_length}: "
                "truncate or drop it first (see masking.tokenize_examples)"
            )
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_length - n)
    return rows


def pack_examples(examples: Sequence[dict], max_length: int) -> list[dict]:
    """Pack tokenized examples into rows of at most `max_length` tokens, greedy first-fit, none split.

    Each row has `input_ids`, `labels`, `position_ids` (restarting at 0 for each example) and
    `example_indices` (which examples it holds, in order). The first label of each example is set to -100:
    it is never a target anyway (a token is predicted from the ones before it), and in a packed row it would
    otherwise be predicted from the end of the previous example.
    """
    rows = []
    for indices in first_fit([len(e["input_ids"]) for e in examples], max_length):
        row = {"input_ids": [], "labels": [], "position_ids": [], "example_indices": indices}
        for i in indices:
            ids = list(examples[i]["input_ids"])
            labels = list(examples[i].get("labels", ids))
            row["input_ids"] += ids
            row["labels"] += [IGNORE_INDEX] + labels[1:]
            row["position_ids"] += list(range(len(ids)))
        rows.append(row)
    return rows


def sequence_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Which packed example each token belongs to: a new one starts wherever the position does not go up by 1."""
    previous = position_ids[:, :1] - 1
    return (torch.diff(position_ids, prepend=previous, dim=-1) != 1).cumsum(-1)


def packed_attention_mask(position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An explicit additive 4D mask `[batch, 1, L, L]`: 0 where a token may attend (same example, not after it),
    the dtype's minimum elsewhere. Eager and SDPA attention both add it to the attention scores."""
    ids = sequence_ids(position_ids)
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = (ids[:, :, None] == ids[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def collate_packed(
    rows: Sequence[dict], pad_token_id: int, explicit_mask: bool = False, mask_dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Tensors `input_ids`, `labels`, `position_ids` for packed rows, right-padded to the longest row.

    No `attention_mask` by default, on purpose: given position ids and no mask (and no cache: call the model
    with `use_cache=False`), transformers builds the block-diagonal causal mask of packed sequences.
    `explicit_mask=True` adds that mask as a 4D `attention_mask` of `mask_dtype` (the model's dtype) instead.
    Padding gets position 0 (each pad is a sequence of its own) and label -100.
    """
    if not rows:
        raise ValueError("collate_packed: no rows")
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": [], "labels": [], "position_ids": []}
    for r in rows:
        padding = width - len(r["input_ids"])
        batch["input_ids"].append(list(r["input_ids"]) + [pad_token_id] * padding)
        batch["labels"].append(list(r["labels"]) + [IGNORE_INDEX] * padding)
        batch["position_ids"].append(list(r["position_ids"]) + [0] * padding)
    tensors = {key: torch.tensor(values, dtype=torch.long) for key, values in batch.items()}
    if explicit_mask:
        tensors["attention_mask"] = packed_attention_mask(tensors["position_ids"], mask_dtype)
    return tensors


def padding_fraction(lengths: Sequence[int], batch_size: int, group_by_length: bool = False, seed: int = 0) -> float:
    """Fraction of token slots that are padding when batches (in order, or length-grouped) pad to their longest."""
    if not lengths:
        raise ValueError("padding_fraction: no lengths")
    if group_by_length:
        batches = length_grouped_batches(lengths, batch_size, seed)
    else:
        batches = [list(range(i, min(i + batch_size, len(lengths)))) for i in range(0, len(lengths), batch_size)]
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / slots


def packing_fraction(lengths: Sequence[int], max_length: int) -> float:
    """Fraction of token slots left empty when the examples are packed (first-fit) into rows of `max_length`."""
    if not lengths:
        raise ValueError("packing_fraction: no lengths")
    rows = first_fit(lengths, max_length)
    return 1 - sum(lengths) / (len(rows) * max_length)
