"""The lean SFT loss: the same summed target-token loss as `loss.summed_token_loss`, computed with less work and memory.

Two pieces, each exact up to float rounding, each tested against the plain loss and its gradient:

- `chunked_cross_entropy`: the output layer and the cross-entropy over the target positions, a chunk of rows at a
  time. Each chunk's logits (rows x vocabulary) are built, turned into the loss and the gradient at once, and freed,
  so the full logits tensor never exists (the idea of Liger Kernel's fused linear cross-entropy and of Apple's Cut
  Cross-Entropy, in plain PyTorch). With SmolLM2's 49,152-token vocabulary an evaluation batch of 64 examples holds
  about 800 target positions: 150 MB of float32 logits, and as much again for their gradient.
- `lean_summed_loss`: when every example of a micro-batch starts with the same tokens (SmolLM2's chat
  template writes the same default system prompt before every question: 24 of about 52 tokens), the decoder runs
  that prefix once, and every row's own tokens after it, packed into the same row without padding: one decoder
  pass, where a block mask lets each row see the prefix and itself, never another row (TRL's `padding_free` packs
  the same way, each row with its own copy of the prefix). The gradient flows back through the prefix's keys and
  values from every row, so it is the same gradient; no slot is spent on padding.

`loss.loss_function` picks `lean_summed_loss` when `TrainConfig.lean` is set; `train` never sees the difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sft_course.masking import IGNORE_INDEX

CHUNK_ROWS = 256  # target positions per chunk of the output layer: 256 x 49,152 float32 logits are 50 MB
MIN_SHARED_PREFIX = 8  # a shorter common prefix is not worth a second decoder call


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `head(hidden)` against `targets`, one chunk of rows at a time; the gradients of the
    hidden states and of the head's trainable parameters are computed in the forward pass, chunk by chunk, so that
    no chunk's logits outlive it (no recomputation in the backward pass either)."""

    @staticmethod
    def forward(ctx, hidden, targets, head, chunk_rows, *params):
        total = hidden.new_zeros((), dtype=torch.float32)
        grad_hidden = torch.zeros_like(hidden)
        grad_params = [torch.zeros_like(p) for p in params]
        for start in range(0, hidden.shape[0], chunk_rows):
            with torch.enable_grad():
                rows = hidden[start : start + chunk_rows].detach().requires_grad_(True)
                loss = F.cross_entropy(head(rows).float(), targets[start : start + chunk_rows], reduction="sum")
                grads = torch.autograd.grad(loss, [rows, *params])
            total += loss.detach()
            grad_hidden[start : start + chunk_rows] = grads[0]
            for accumulated, grad in zip(grad_params, grads[1:]):
                accumulated += grad
        ctx.save_for_backward(grad_hidden, *grad_params)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, *grad_params = ctx.saved_tensors
        return (grad_hidden * grad_output, None, None, None, *(g * grad_output for g in grad_params))


def chunked_cross_entropy(hidden: torch.Tensor, head, targets: torch.Tensor, chunk_rows: int = CHUNK_ROWS):
    """`F.cross_entropy(head(hidden).float(), targets, reduction="sum")` without the full logits tensor.

    `hidden` (rows x d) are the hidden states of the positions that predict a target, `targets` their labels (no
    -100 among them), `head` the output layer (any module: PEFT's trainable-token wrapper works too). Under
    `torch.no_grad` (evaluation) the chunks are simply summed.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not torch.is_grad_enabled():
        return sum(
            (
                F.cross_entropy(head(hidden[i : i + chunk_rows]).float(), targets[i : i + chunk_rows], reduction="sum")
                for i in range(0, hidden.shape[0], chunk_rows)
            ),
            hidden.new_zeros((), dtype=torch.float32),
        )
    params = [p for p in head.parameters() if p.requires_grad]
    return _ChunkedCrossEntropy.apply(hidden, targets, head, chunk_rows, *params)


def shared_prefix_length(batch: dict, minimum: int = MIN_SHARED_PREFIX) -> int:
    """How many leading tokens every row of `batch` shares and can be run once (0 when fewer than `minimum`).

    The prefix stops before the first position whose next token is a target (that position's hidden state is
    scored, so it belongs to the rows), and before any padding.
    """
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    same = (ids == ids[:1]).all(dim=0) & (mask == 1).all(dim=0)
    same[:-1] &= (labels[:, 1:] == IGNORE_INDEX).all(dim=0)  # position t predicts label t+1: keep it unscored
    differs = (~same).nonzero()
    length = int(differs[0]) if len(differs) else ids.shape[1]
    length = min(length, ids.shape[1] - 1)  # at least one token of each row runs after the prefix
    return length if length >= minimum else 0


def _packed_rows(batch: dict, prefix: int) -> dict:
    """The shared `prefix` once, then every row's tokens after it, without padding, packed into one row: input ids,
    positions (the prefix from 0, each row continuing after it), the next-token label of each packed position (-100
    on the prefix and after a row's last token), and a boolean (1, 1, length, length) mask: the prefix sees itself
    causally; each row's token sees the prefix and its own row up to itself, never another row."""
    ids, labels = batch["input_ids"], batch["labels"]
    lengths = batch["attention_mask"].sum(dim=1).tolist()  # right padding: a row's real tokens come first
    ignore = labels.new_full((1,), IGNORE_INDEX)
    device = ids.device
    packed_ids = torch.cat([ids[0, :prefix], *(ids[i, prefix:n] for i, n in enumerate(lengths))])
    positions = torch.cat(
        [torch.arange(prefix, device=device), *(torch.arange(prefix, n, device=device) for n in lengths)]
    )
    next_labels = torch.cat(
        [
            labels.new_full((prefix,), IGNORE_INDEX),
            *(torch.cat([labels[i, prefix + 1 : n], ignore]) for i, n in enumerate(lengths)),
        ]
    )
    # the row of each packed position: -1 for the prefix, which every row sees
    row = torch.cat(
        [
            torch.full((prefix,), -1, device=device),
            *(torch.full((n - prefix,), i, device=device) for i, n in enumerate(lengths)),
        ]
    )
    order = torch.arange(len(row), device=device)
    sees = ((row[:, None] == row[None, :]) | (row[None, :] == -1)) & (order[None, :] <= order[:, None])
    return {
        "input_ids": packed_ids[None],
        "position_ids": positions[None],
        "mask": sees[None, None],
        "labels": next_labels,
    }


def _decoder_hidden(model, batch: dict, prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states, next-token labels) of every packed position: the shared `prefix` once and all rows' own
    tokens after it in one row (`_packed_rows`), one pass of the decoder, so no slot is padding and no token of the
    prefix runs twice. The prefix's positions are never targets (`shared_prefix_length`)."""
    packed = _packed_rows(batch, prefix)
    hidden = model.get_decoder()(
        input_ids=packed["input_ids"],
        position_ids=packed["position_ids"],
        attention_mask=packed["mask"],
        use_cache=False,
    ).last_hidden_state[0]
    return hidden, packed["labels"]


def lean_summed_loss(model, batch: dict, chunk_rows: int = CHUNK_ROWS, share_prefix: bool = True) -> torch.Tensor:
    """`loss.summed_token_loss(model, batch, logits_on_targets=True)`, computed leanly: the micro-batch's shared
    prefix run once (`shared_prefix_length`), the rows after it packed without padding, and the output layer's
    cross-entropy in chunks (`chunked_cross_entropy`)."""
    prefix = shared_prefix_length(batch) if share_prefix else 0
    hidden, targets = _decoder_hidden(model, batch, prefix)
    keep = targets != IGNORE_INDEX
    return chunked_cross_entropy(hidden[keep], model.get_output_embeddings(), targets[keep], chunk_rows)
