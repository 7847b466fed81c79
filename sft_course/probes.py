"""Probes of what a model knows without being asked in chat: continue the pre-training phrasing of a fact."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sft_course.generation import generate
from sft_course.scoring import value_follows
from sft_course.world import ATTRIBUTES, Person, probe_prefix


def completion_probe(model, tokenizer, people: list[Person], attributes=ATTRIBUTES, **generate_kwargs) -> dict:
    """Greedy-continue "NAME was born in" and the like; per attribute, the share continued with the fact."""
    pairs = [(p, a) for a in attributes for p in people]
    outputs = generate(model, tokenizer, [probe_prefix(p, a) for p, a in pairs], max_new_tokens=8, **generate_kwargs)
    per_attribute = {a: [] for a in attributes}
    for (p, a), out in zip(pairs, outputs):
        per_attribute[a].append(value_follows(out["text"], p.facts[a]))
    scores = {a: sum(v) / len(v) for a, v in per_attribute.items()}
    return {"accuracy": sum(scores.values()) / len(scores), "per_attribute": scores}


@torch.no_grad()
def teacher_forced_probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, people: list[Person]) -> float:
    """Share of (person, attribute) facts whose every token is the argmax after the canonical prefix.

    One forward pass instead of a generation loop: cheap enough to monitor pre-training. It equals the
    greedy completion probe whenever greedy decoding would pick the fact's own tokenization.
    """
    hits = []
    for a in ATTRIBUTES:
        prefixes = [tokenizer(probe_prefix(p, a), add_special_tokens=False).input_ids for p in people]
        fulls = [tokenizer(probe_prefix(p, a) + " " + p.facts[a], add_special_tokens=False).input_ids for p in people]
        width = max(map(len, fulls))
        ids = torch.full((len(people), width), tokenizer.pad_token_id)
        for i, f in enumerate(fulls):
            ids[i, : len(f)] = torch.tensor(f)
        predicted = model(input_ids=ids.to(model.device)).logits.argmax(-1).cpu()
        for i, (pre, f) in enumerate(zip(prefixes, fulls)):
            targets = torch.tensor(f[len(pre) :])
            hits.append(bool((predicted[i, len(pre) - 1 : len(f) - 1] == targets).all()))
    return sum(hits) / len(hits)
