"""The evaluation harness: what a model knows, whether it answers, whether it stops, and what it forgot."""

from __future__ import annotations

import json
import math
import random

import torch

from sft_course.generation import chat_prompt, generate
from sft_course.probes import completion_probe, is_correct_answer
from sft_course.world import (
    ATTRIBUTES,
    HELD_OUT_SPLIT,
    JSON_PROFILE_QUESTION,
    TRAIN_SPLIT,
    Person,
    World,
    biography,
    make_world,
    question,
)

def fresh_biographies(world: World, people: list[Person], seed: int = 12345) -> list[str]:
    """Pre-training-style text about `people` that pre-training never saw verbatim.

    New paraphrase choices and sentence orders, drawn with another seed: the same facts in the same style,
    so its perplexity measures what the model keeps of pre-training (forgetting), not memorised strings.
    """
    rng = random.Random(seed)
    return [biography(p, rng) for p in people]


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    """exp(mean loss per predicted token) of `texts`, each as its own document."""
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        logits = model(**enc).logits[:, :-1].float()
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((target != -100).sum())
    return math.exp(total / count)


def qa_accuracy(model, tokenizer, people: list[Person], kind: str = "trained", paraphrase: int = 0,
                attributes=ATTRIBUTES, max_new_tokens: int = 24, **generate_kwargs) -> dict:
    """Exact-match accuracy per attribute for chat questions about `people`, and the stop rate."""
    pairs = [(p, a) for a in attributes for p in people]
    prompts = [chat_prompt(tokenizer, question(p, a, paraphrase, kind)) for p, a in pairs]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    correct = {a: [] for a in attributes}
    for (p, a), out in zip(pairs, outputs):
        correct[a].append(out["stopped"] and is_correct_answer(out["text"], p, a))
    per_attribute = {a: sum(v) / len(v) for a, v in correct.items()}
    return {
        "accuracy": sum(per_attribute.values()) / len(per_attribute),
        "per_attribute": per_attribute,
        "stop_rate": sum(o["stopped"] for o in outputs) / len(outputs),
        "answers": [(p.name, a, o["text"], o["stopped"]) for (p, a), o in zip(pairs, outputs)],
    }


def json_task(model, tokenizer, people: list[Person], max_new_tokens: int = 96, **generate_kwargs) -> dict:
    """The profile-as-JSON task: share of answers that parse as JSON with the right keys, and fully correct."""
    prompts = [chat_prompt(tokenizer, JSON_PROFILE_QUESTION.format(name=p.name)) for p in people]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    valid, exact = 0, 0
    keys = {"name", *ATTRIBUTES}
    for p, out in zip(people, outputs):
        try:
            parsed = json.loads(out["text"])
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and set(parsed) == keys:
            valid += 1
            exact += parsed == {"name": p.name, **p.facts}
    return {"format_compliance": valid / len(people), "exact_match": exact / len(people)}


def evaluate_model(model, tokenizer, world: World | None = None, n_people: int | None = 200,
                   include_json: bool = True, seed: int = 0) -> dict:
    """Every headline figure of the course for one model, as a flat dict of numbers.

    `n_people` people per split (a seeded sample; None for all) keep it fast on a CPU.
    """
    world = world or make_world()
    rng = random.Random(seed)

    def sample(split: str) -> list[Person]:
        people = world.split(split)
        return people if n_people is None or n_people >= len(people) else rng.sample(people, n_people)

    seen, held_out = sample(TRAIN_SPLIT), sample(HELD_OUT_SPLIT)
    seen_qa = qa_accuracy(model, tokenizer, seen)
    held_qa = qa_accuracy(model, tokenizer, held_out)
    held_unseen = qa_accuracy(model, tokenizer, held_out, kind="unseen")
    probe = completion_probe(model, tokenizer, seen + held_out)
    report = {
        "seen_accuracy": seen_qa["accuracy"],
        "held_out_accuracy": held_qa["accuracy"],
        "held_out_unseen_paraphrase_accuracy": held_unseen["accuracy"],
        "completion_probe_accuracy": probe["accuracy"],
        "stop_rate": held_qa["stop_rate"],
        "perplexity": perplexity(model, tokenizer, fresh_biographies(world, held_out)),
        **{f"held_out_{a}": v for a, v in held_qa["per_attribute"].items()},
        **{f"seen_{a}": v for a, v in seen_qa["per_attribute"].items()},
    }
    if include_json:
        js = json_task(model, tokenizer, held_out[:50])
        report["json_format_compliance"] = js["format_compliance"]
        report["json_exact_match"] = js["exact_match"]
    return {k: round(v, 4) for k, v in report.items()}
