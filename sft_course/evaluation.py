"""The evaluation harness: what a model knows, whether it answers, whether it stops, and what it forgot.

It asks questions (`qa_prompts`), generates the answers (`sft_course.generation.generate`) and scores them with
`sft_course.scoring`, whose module docstring defines the five outcomes of an answer (`correct`,
`confident_wrong`, `off_format`, `ended_document`, `out_of_tokens`). The few-shot baseline asks the same
questions with a few solved examples about *other* people as earlier chat turns, the in-context learning that
SFT must beat.
"""

from __future__ import annotations

import math
import random
import re

import torch

from sft_course.generation import chat_prompt, generate
from sft_course.loss import count_target_tokens, per_token_loss
from sft_course.masking import IGNORE_INDEX
from sft_course.probes import completion_probe
from sft_course.scoring import first_sentence, score_answers, score_json_answers
from sft_course.tokenizer import END_OF_TEXT
from sft_course.world import (
    ATTRIBUTES,
    HELD_OUT_SPLIT,
    JSON_PROFILE_QUESTION,
    QUESTION_TEMPLATES,
    TRAIN_SPLIT,
    Person,
    World,
    biography,
    canonical_sentence,
    make_world,
    probe_prefix,
    question,
)


def fresh_biographies(people: list[Person], seed: int = 12345) -> list[str]:
    """Pre-training-style text about `people` that pre-training never saw verbatim.

    New paraphrase choices and sentence orders, drawn with another seed: the same facts in the same style,
    so its perplexity measures what the model keeps of pre-training (forgetting), not memorised strings.
    """
    rng = random.Random(seed)
    return [biography(p, rng) for p in people]


@torch.no_grad()
def _text_token_losses(model, tokenizer, texts: list[str], batch_size: int) -> list[tuple[float, int]]:
    """`(summed loss, predicted tokens)` of each text read as its own document (right-padded, padding masked)."""
    if not texts:
        raise ValueError("no texts to score")
    sums = []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"  # left padding would shift the position ids of the shorter texts
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
            losses = per_token_loss(model(**enc).logits, labels).sum(1).tolist()
            counts = [count_target_tokens(row[None]) for row in labels]
            sums += list(zip(losses, counts))
    finally:
        tokenizer.padding_side = old_side
    return sums


def perplexity(model, tokenizer, texts: list[str], batch_size: int = 64) -> float:
    """exp(mean loss per predicted token) of `texts`, each as its own document.

    Every token after the first of each text is predicted; the mean is over all of them (token-weighted,
    so a long text counts more than a short one). Batches are right-padded and the padding is masked.
    """
    sums = _text_token_losses(model, tokenizer, texts, batch_size)
    return math.exp(sum(s for s, _ in sums) / sum(n for _, n in sums))


def text_losses(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[float]:
    """Mean loss per predicted token of each text, read as a plain document (e.g. to rank suspicious labels)."""
    return [s / n for s, n in _text_token_losses(model, tokenizer, texts, batch_size)]


def _paraphrase_index(paraphrase, i: int, n: int) -> int:
    """Which wording question `i` uses: a fixed index, `"rotate"` (all `n` in turn), or a sequence in turn."""
    if paraphrase == "rotate":
        return i % n
    choices = (
        [paraphrase]
        if isinstance(paraphrase, int)
        else list(paraphrase)
        if isinstance(paraphrase, (list, tuple))
        else []
    )
    if not choices or not all(isinstance(c, int) and 0 <= c < n for c in choices):
        raise ValueError(f"paraphrase must be 'rotate', an index below {n} or a list of them, got {paraphrase!r}")
    return choices[i % len(choices)]


def few_shot_turns(
    world: World, person: Person, attribute: str, n_shots: int, kind: str = "trained", seed: int = 0
) -> list[dict]:
    """`n_shots` solved examples as earlier chat turns: the same kind of question about other people.

    The shots are training-split people other than `person`, drawn with a seed that depends on the person,
    answered in the canonical sentence (the phrasing SFT teaches in this course).
    """
    pool = [p for p in world.split(TRAIN_SPLIT) if p.name != person.name]
    rng = random.Random(f"{seed}/{person.name}/{attribute}")
    turns = []
    for i, shot in enumerate(rng.sample(pool, n_shots)):
        n = len(QUESTION_TEMPLATES[attribute][kind])
        turns += [
            {"role": "user", "content": question(shot, attribute, i % n, kind)},
            {"role": "assistant", "content": canonical_sentence(shot, attribute)},
        ]
    return turns


def qa_prompts(
    tokenizer,
    pairs: list[tuple[Person, str]],
    kind: str = "trained",
    paraphrase: int | str | list = 0,
    n_shots: int = 0,
    world: World | None = None,
    seed: int = 0,
) -> list[str]:
    """Chat prompts asking about each `(person, attribute)`, optionally after `n_shots` few-shot turns."""
    if n_shots and world is None:
        world = make_world()
    prompts = []
    for i, (p, a) in enumerate(pairs):
        n = len(QUESTION_TEMPLATES[a][kind])
        asked = question(p, a, _paraphrase_index(paraphrase, i, n), kind)
        if not n_shots:
            prompts.append(chat_prompt(tokenizer, asked))
            continue
        messages = few_shot_turns(world, p, a, n_shots, kind, seed) + [{"role": "user", "content": asked}]
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return prompts


def qa_report(
    model,
    tokenizer,
    people: list[Person],
    kind: str = "trained",
    paraphrase: int | str | list = 0,
    attributes=ATTRIBUTES,
    max_new_tokens: int = 24,
    n_shots: int = 0,
    world: World | None = None,
    **generate_kwargs,
) -> dict:
    """Ask every attribute of every person in chat format; score with `score_answers`.

    `kind` picks trained or unseen question wordings; `paraphrase` one of them by index, `"rotate"` to cycle
    through all of them over the questions, or a list of indices to cycle through (e.g. `[1, 2]`). `n_shots > 0`
    prepends that many solved examples about other people (`few_shot_turns`). Correct means exact match and a
    stop within `max_new_tokens`.
    """
    pairs = [(p, a) for a in attributes for p in people]
    prompts = qa_prompts(tokenizer, pairs, kind, paraphrase, n_shots, world)
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    return score_answers(pairs, outputs, attributes)


FEW_SHOT_TEXT_STYLES = ("question", "cloze")


def few_shot_text_prompt(
    world: World,
    person: Person,
    attribute: str,
    n_shots: int,
    style: str = "question",
    kind: str = "trained",
    paraphrase: int = 0,
    seed: int = 0,
    separator: str = END_OF_TEXT,
) -> str:
    """A few-shot prompt in plain text, no chat tokens: the format of pre-training, not of a chat.

    The shots are the same training-split people as `few_shot_turns` (same seed), each solved in the
    canonical sentence. Each shot is its own document, ended by `separator` (the base model's end-of-document
    token, which joined the documents of pre-training), because a pre-training document is about one person:

    - `style="question"`: each shot is the question in words followed by its answer sentence, and the prompt
      ends with the question about `person` ("Where was A born? A was born in Tampa. Where was B born?");
    - `style="cloze"`: each shot is only the answer sentence, and the prompt ends with the start of the
      answer sentence about `person` ("A was born in Tampa. B was born in"): no question words at all.
    """
    if style not in FEW_SHOT_TEXT_STYLES:
        raise ValueError(f"style must be one of {FEW_SHOT_TEXT_STYLES}, got {style!r}")
    pool = [p for p in world.split(TRAIN_SPLIT) if p.name != person.name]
    rng = random.Random(f"{seed}/{person.name}/{attribute}")
    n = len(QUESTION_TEMPLATES[attribute][kind])
    parts = []
    for i, shot in enumerate(rng.sample(pool, n_shots)):
        solved = canonical_sentence(shot, attribute)
        parts.append(solved if style == "cloze" else f"{question(shot, attribute, i % n, kind)} {solved}")
    parts.append(probe_prefix(person, attribute) if style == "cloze" else question(person, attribute, paraphrase, kind))
    return separator.join(parts)


def text_answer(prompt: str, continuation: str, style: str) -> dict:
    """The answer a plain-text few-shot prompt got: the first sentence, cut the way a stop sequence cuts.

    A base model does not end a turn; a few-shot harness stops it at the end of the first sentence (or line).
    For a cloze prompt the sentence starts inside the prompt, so the answer is the prompt's last sentence
    (the start of the answer) plus the continuation. `stopped` is whether a full sentence came out.
    """
    if style not in FEW_SHOT_TEXT_STYLES:
        raise ValueError(f"style must be one of {FEW_SHOT_TEXT_STYLES}, got {style!r}")
    if style == "cloze":
        start = max(prompt.rfind(". "), prompt.rfind("? "), prompt.rfind(END_OF_TEXT))
        start = -1 if start < 0 else start + (len(END_OF_TEXT) if prompt.startswith(END_OF_TEXT, start) else 2)
        continuation = prompt[start if start >= 0 else 0 :] + continuation
    answer = first_sentence(continuation.strip())
    return {"text": answer, "stopped": answer.endswith(".") or "\n" in continuation}


def few_shot_text_accuracy(
    model,
    tokenizer,
    people: list[Person],
    n_shots: int = 3,
    style: str = "question",
    world: World | None = None,
    attributes=ATTRIBUTES,
    max_new_tokens: int = 24,
    seed: int = 0,
) -> dict:
    """Ask every attribute of every person with a plain-text few-shot prompt; score the first sentence.

    Scored by `score_answers`, a complete first sentence counting as a stop (plain text has no end of turn): an
    answer is correct when its first sentence is the fact alone or the canonical sentence.
    """
    world = world or make_world()
    pairs = [(p, a) for a in attributes for p in people]
    prompts = [few_shot_text_prompt(world, p, a, n_shots, style, seed=seed) for p, a in pairs]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    answers = [text_answer(prompt, o["text"], style) for prompt, o in zip(prompts, outputs)]
    return score_answers(pairs, answers, attributes)


def _sentence_starts(tokenizer, text: str) -> tuple[list[int], list[bool], list[bool]]:
    """Token ids of `text`, whether each token lies in the first sentence, and whether it starts a later one."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
    first_end = ends[0] if ends else len(text)
    starts = set()
    for end in ends:  # the first token that has a character after the sentence end (after its space)
        starts.add(next((i for i, (a, b) in enumerate(offsets) if b > end), None))
    in_first = [b <= first_end for _, b in offsets]
    return ids, in_first, [i in starts for i in range(len(ids))]


@torch.no_grad()
def perplexity_by_position(model, tokenizer, texts: list[str]) -> dict:
    """Perplexity of `texts` split by where the predicted token sits (each text is its own document).

    - `first_sentence` / `rest`: tokens of the first sentence vs of every later sentence;
    - `sentence_start` / `other`: the first token of each sentence after the first (the token that follows a
      full stop and its space: where a model trained to stop after one sentence expects the end of its turn)
      vs every other predicted token;
    - `all`: every predicted token, equal to `perplexity(model, tokenizer, texts)`.

    Each entry is exp(mean loss) over its tokens; `*_tokens` give the counts. The first token of a text is
    never predicted.
    """
    if not texts:
        raise ValueError("perplexity of no texts")
    groups = {"first_sentence": [], "rest": [], "sentence_start": [], "other": [], "all": []}
    was_training = model.training
    model.eval()
    for text in texts:
        ids, in_first, starts = _sentence_starts(tokenizer, text)
        if len(ids) < 2:
            raise ValueError(f"text too short to predict a token: {text!r}")
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
        losses = torch.nn.functional.cross_entropy(
            logits, torch.tensor(ids[1:], device=model.device), reduction="none"
        ).tolist()
        for i, loss in enumerate(losses, start=1):
            groups["all"].append(loss)
            groups["first_sentence" if in_first[i] else "rest"].append(loss)
            groups["sentence_start" if starts[i] else "other"].append(loss)
    model.train(was_training)
    report = {}
    for name, values in groups.items():
        report[name] = math.exp(sum(values) / len(values)) if values else float("nan")
        report[f"{name}_tokens"] = len(values)
    return report


def json_task(model, tokenizer, people: list[Person], max_new_tokens: int = 96, **generate_kwargs) -> dict:
    """The profile-as-JSON task, a format pre-training never showed; scored by `score_json_answers`."""
    prompts = [chat_prompt(tokenizer, JSON_PROFILE_QUESTION.format(name=p.name)) for p in people]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, **generate_kwargs)
    report = score_json_answers(people, [o["text"] for o in outputs])
    report["stop_rate"] = sum(o["stopped"] for o in outputs) / len(outputs)
    return report


def sample_people(world: World, n_people: int | None, seed: int = 0) -> tuple[list[Person], list[Person]]:
    """`(seen, held_out)`: a seeded sample of `n_people` of each split (None: all of them).

    `evaluate_model` and `sft_course.experiment.evaluate_accuracy` both draw their people here.
    """
    seen, held_out = world.split(TRAIN_SPLIT), world.split(HELD_OUT_SPLIT)
    if n_people is None:
        return seen, held_out
    rng = random.Random(seed)
    return rng.sample(seen, min(n_people, len(seen))), rng.sample(held_out, min(n_people, len(held_out)))


def evaluate_model(
    model,
    tokenizer,
    world: World | None = None,
    n_people: int | None = 200,
    include_json: bool = True,
    n_shots: int = 3,
    seed: int = 0,
    seen: list[Person] | None = None,
    held_out: list[Person] | None = None,
) -> dict:
    """Every headline figure of the course for one model, as a flat dict of numbers.

    `n_people` people per split (a seeded sample; None for all) keep it fast on a CPU. Pass `seen` to score
    the people a run really trained on (a run on the first 100 training people has not seen the other 400),
    `held_out` to choose the held-out people. Keys:

    - `seen_accuracy`, `held_out_accuracy`: exact match, trained question wording (paraphrase 0), and
      `seen_<attribute>` / `held_out_<attribute>` per attribute;
    - `seen_unseen_paraphrase_accuracy`, `held_out_unseen_paraphrase_accuracy` and `..._unseen_<attribute>`:
      the same with the question wordings SFT never trained on (both of them, alternating);
    - `stop_rate`, `confident_wrong_rate`, `off_format_rate`, `ended_document_rate`, `lenient_accuracy`: on
      held-out people, trained wording; `seen_confident_wrong_rate` on seen people;
    - `few_shot_held_out_accuracy`, `few_shot_stop_rate`, `few_shot_confident_wrong_rate`,
      `few_shot_lenient_accuracy`: the held-out questions after `n_shots` solved examples as chat turns (0: skipped;
      `few_shot_accuracy` is the same figure under the name the command line documents);
    - `few_shot_text_accuracy`: the same in plain text, no chat tokens (`few_shot_text_prompt`, style
      "question": solved examples, then the question in words), and `few_shot_cloze_accuracy` (style "cloze":
      solved sentences, then the start of the answer sentence); the first sentence is scored;
    - `completion_probe_accuracy` on both splits; `perplexity` on fresh biographies of the held-out people;
    - `json_valid_rate`, `json_format_compliance`, `json_exact_match`, `json_field_accuracy` (50 held-out people).
    """
    world = world or make_world()
    sampled_seen, sampled_held_out = sample_people(world, n_people, seed)
    seen, held_out = seen or sampled_seen, held_out or sampled_held_out
    seen_qa = qa_report(model, tokenizer, seen)
    held_qa = qa_report(model, tokenizer, held_out)
    seen_unseen = qa_report(model, tokenizer, seen, kind="unseen", paraphrase="rotate")
    held_unseen = qa_report(model, tokenizer, held_out, kind="unseen", paraphrase="rotate")
    probe = completion_probe(model, tokenizer, seen + held_out)
    report = {
        "n_people": len(held_out),
        "seen_accuracy": seen_qa["accuracy"],
        "held_out_accuracy": held_qa["accuracy"],
        "seen_unseen_paraphrase_accuracy": seen_unseen["accuracy"],
        "held_out_unseen_paraphrase_accuracy": held_unseen["accuracy"],
        "completion_probe_accuracy": probe["accuracy"],
        "stop_rate": held_qa["stop_rate"],
        "confident_wrong_rate": held_qa["confident_wrong_rate"],
        "seen_confident_wrong_rate": seen_qa["confident_wrong_rate"],
        "off_format_rate": held_qa["off_format_rate"],
        "ended_document_rate": held_qa["ended_document_rate"],
        "lenient_accuracy": held_qa["lenient_accuracy"],
        "perplexity": perplexity(model, tokenizer, fresh_biographies(held_out)),
        **{f"held_out_{a}": v for a, v in held_qa["per_attribute"].items()},
        **{f"seen_{a}": v for a, v in seen_qa["per_attribute"].items()},
        **{f"held_out_unseen_{a}": v for a, v in held_unseen["per_attribute"].items()},
        **{f"seen_unseen_{a}": v for a, v in seen_unseen["per_attribute"].items()},
    }
    if n_shots:
        few = qa_report(model, tokenizer, held_out, n_shots=n_shots, world=world)
        report.update(
            {
                "few_shot_held_out_accuracy": few["accuracy"],
                "few_shot_accuracy": few["accuracy"],
                "few_shot_stop_rate": few["stop_rate"],
                "few_shot_confident_wrong_rate": few["confident_wrong_rate"],
                "few_shot_lenient_accuracy": few["lenient_accuracy"],
            }
        )
        for style in FEW_SHOT_TEXT_STYLES:
            text = few_shot_text_accuracy(model, tokenizer, held_out, n_shots, style, world, seed=seed)
            report[f"few_shot_{'text' if style == 'question' else style}_accuracy"] = text["accuracy"]
    if include_json:
        js = json_task(model, tokenizer, held_out[:50])
        report.update(
            {
                "json_valid_rate": js["json_valid_rate"],
                "json_format_compliance": js["format_compliance"],
                "json_exact_match": js["exact_match"],
                "json_field_accuracy": js["field_accuracy"],
            }
        )
    return {k: round(v, 4) for k, v in report.items()}
