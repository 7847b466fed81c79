"""Preference tuning after SFT with DPO: pairs from the world, response log-probabilities, the loss, the scores.

Direct Preference Optimization (Rafailov et al., 2023, arXiv 2305.18290) trains a policy on pairs
(prompt, chosen, rejected) against a frozen reference, usually the SFT model it starts from:

    loss = -log sigmoid(beta * [(log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))])

where log pi(y) is the summed log-probability of the response tokens only: the targets of
`sft_course.masking` (the assistant's content and its end-of-turn token), the prompt masked out. The
reward of a response is `beta * (log pi(y) - log ref(y))`; the margin is chosen minus rejected.

The pairs teach a model to say "I don't know" about people it cannot know:

- a person of the world (known from pre-training): chosen is the right answer in the SFT answer format
  ("NAME was born in Tampa."), rejected the same sentence with a wrong city drawn from the training people's;
- a name the world never used (so pre-training never wrote it): chosen is the abstention
  (`ABSTENTION`, "NAME was born in the world."), rejected a confident answer with a city drawn the same way;
  with `known_rejected="abstention"` a known person's rejected answer is the abstention instead.

With LoRA the reference is the policy with its adapter disabled (`reference_logps`), as TRL does with PEFT:
no second copy of the model. `abstention_report` scores a model on known and unknown people.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from peft import PeftModel

from sft_course.collate import pad_batch
from sft_course.generation import chat_prompt, end_of_turn_id, generate
from sft_course.masking import IGNORE_INDEX, tokenize_example
from sft_course.scoring import classify_answer, parse_answer
from sft_course.world import (
    BIO_TEMPLATES,
    FIRST_NAMES,
    LAST_NAMES,
    QUESTION_TEMPLATES,
    TRAIN_SPLIT,
    Person,
    World,
)

# The abstention, in the base model's own words: pre-training wrote only the world's biographies, so "I don't
# know" is made of tokens it never read (untrained embeddings, the trap of notebooks 03-04). This one is
# deliberately empty, true of anyone and naming no city, and it branches off the SFT answer at the city,
# where the model's knowledge shows. "{name}" becomes the name asked about (`abstention_for`).
ABSTENTION = "{name} was born in the world."
ATTRIBUTE = "birth_city"  # the fact the pairs ask about
KNOWN, UNKNOWN = "known", "unknown"
UNKNOWN_OUTCOMES = ("abstain", "confident_wrong", "other")
KNOWN_REJECTED = ("wrong", "abstention")  # what a known person's pair rejects (`preference_pairs`)


def abstention_for(name: str, abstention: str = ABSTENTION) -> str:
    """The abstention about `name`: `abstention` with "{name}" replaced by the name (a fixed phrase stays as is)."""
    return abstention.replace("{name}", name)


def unknown_names(world: World, n: int | None = None, seed: int = 0) -> list[str]:
    """`n` full names (all, if None) built from the world's first and last names that no person of it has.

    Pre-training only ever wrote the world's people, so a model cannot know anything about these names.
    The order is a seeded shuffle, so disjoint slices give disjoint training and evaluation names.
    """
    used = {p.name for p in world.people}
    names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES if f"{first} {last}" not in used]
    random.Random(seed).shuffle(names)
    if n is not None and n > len(names):
        raise ValueError(f"asked for {n} unknown names, but the world leaves only {len(names)} unused")
    return names[:n]


def training_values(world: World, attribute: str = ATTRIBUTE) -> list[str]:
    """The values of `attribute` among the SFT training people, sorted: where the wrong answers are drawn from."""
    return sorted({p.facts[attribute] for p in world.split(TRAIN_SPLIT)})


def answer_sentence(name: str, value: str, attribute: str = ATTRIBUTE) -> str:
    """The SFT answer format: the canonical pre-training sentence, e.g. "Yuri Blackwood was born in Tampa."."""
    return BIO_TEMPLATES[attribute][0].format(name=name, value=value)


def ask(name: str, attribute: str = ATTRIBUTE, paraphrase: int = 0) -> str:
    """The trained question wording number `paraphrase` about `name` ("Where was NAME born?")."""
    return QUESTION_TEMPLATES[attribute]["trained"][paraphrase].format(name=name)


def preference_pairs(
    known: Sequence[Person],
    unknown: Sequence[str],
    values: Sequence[str],
    attribute: str = ATTRIBUTE,
    paraphrases: Iterable[int] = (0,),
    abstention: str = ABSTENTION,
    seed: int = 0,
    known_rejected: str = "wrong",
) -> list[dict]:
    """Pairs `{"prompt", "chosen", "rejected", "person", "kind"}` for known people and unknown names.

    Known: chosen = the right answer sentence, rejected = the same sentence with a wrong value from `values`
    (`known_rejected="wrong"`) or the abstention (`known_rejected="abstention"`: do not abstain about someone
    you know). Unknown: chosen = the abstention (`abstention_for`: "{name}" in it becomes the name), rejected =
    an answer sentence with a value from `values`. One pair per person and question paraphrase; the values are
    drawn with `seed`.

    Why "abstention": DPO learns only from the tokens where chosen and rejected differ. A right and a wrong answer
    share "NAME was born in", so known pairs with a wrong value never push that prefix up, while every unknown
    pair pushes it down; the policy then learns to abstain about everyone.
    """
    if known_rejected not in KNOWN_REJECTED:
        raise ValueError(f"known_rejected must be one of {KNOWN_REJECTED}, got {known_rejected!r}")
    paraphrases = list(paraphrases)
    if not paraphrases:
        raise ValueError("paraphrases is empty: each person needs at least one question wording")
    if not abstention.strip():
        raise ValueError("the abstention must be a non-empty answer")
    rng = random.Random(seed)
    pairs = []
    for person in known:
        truth = person.facts[attribute]
        wrong_values = [v for v in values if v != truth]
        if not wrong_values:
            raise ValueError(f"no wrong value for {person.name}: values holds only {truth!r}")
        for k in paraphrases:
            pairs.append(
                {
                    "prompt": ask(person.name, attribute, k),
                    "chosen": answer_sentence(person.name, truth, attribute),
                    "rejected": answer_sentence(person.name, rng.choice(wrong_values), attribute)
                    if known_rejected == "wrong"
                    else abstention_for(person.name, abstention),
                    "person": person.name,
                    "kind": KNOWN,
                }
            )
    for name in unknown:
        for k in paraphrases:
            pairs.append(
                {
                    "prompt": ask(name, attribute, k),
                    "chosen": abstention_for(name, abstention),
                    "rejected": answer_sentence(name, rng.choice(list(values)), attribute),
                    "person": name,
                    "kind": UNKNOWN,
                }
            )
    return pairs


def messages(pair: dict, side: str) -> list[dict]:
    """The chat of one side ("chosen" or "rejected") of a pair: the question, then that response."""
    if side not in ("chosen", "rejected"):
        raise ValueError(f"side must be 'chosen' or 'rejected', got {side!r}")
    return [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair[side]}]


def tokenize_pairs(tokenizer, pairs: Sequence[dict], max_length: int | None = None) -> list[dict]:
    """Each pair as `{"chosen": example, "rejected": example}`, examples with the loss masks of 02
    (`sft_course.masking.tokenize_example`: -100 on the prompt, the response and its end-of-turn token kept)."""
    return [
        {side: tokenize_example(tokenizer, messages(pair, side), max_length) for side in ("chosen", "rejected")}
        for pair in pairs
    ]


def collate_pairs(tokenized: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One right-padded batch of 2N rows: the N chosen sequences, then the N rejected ones (as TRL orders them)."""
    if not tokenized:
        raise ValueError("collate_pairs: no pairs")
    return pad_batch([t["chosen"] for t in tokenized] + [t["rejected"] for t in tokenized], pad_token_id)


def trl_rows(tokenizer, pairs: Sequence[dict]) -> list[dict]:
    """The pairs as rows for TRL's `DPOTrainer` that tokenize to the very tokens and masks of `tokenize_pairs`.

    TRL's conversational path counts the template's newline after `<|im_end|>` in the completion, which the
    masks of 02 leave out; so the rows are plain text: the rendered prompt, and each response followed by
    the end-of-turn token. TRL appends its tokenizer's EOS to a completion that does not end with it, so give
    it a copy of the tokenizer whose `eos_token` is the end-of-turn token (`trl_tokenizer`).
    """
    eot = tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer))
    return [
        {
            "prompt": chat_prompt(tokenizer, pair["prompt"]),
            "chosen": pair["chosen"] + eot,
            "rejected": pair["rejected"] + eot,
        }
        for pair in pairs
    ]


def trl_tokenizer(tokenizer):
    """A copy of `tokenizer` whose EOS is the end-of-turn token, so that TRL adds nothing to `trl_rows`."""
    copied = copy.deepcopy(tokenizer)
    copied.eos_token = tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer))
    return copied


def response_logps(model, batch: dict, average: bool = False) -> torch.Tensor:
    """Log-probability of each row's response tokens (labels != -100), summed (DPO, TRL) or averaged per token.

    Position t predicts token t+1, so the logits are shifted against the labels as in the SFT loss.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row has no response token: its log-probability would be empty")
    token_logps = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    summed = (token_logps * mask).sum(dim=1)
    return summed / mask.sum(dim=1) if average else summed


@torch.no_grad()
def reference_logps(policy, batch: dict, reference=None, average: bool = False) -> torch.Tensor:
    """The frozen reference's response log-probabilities: `reference` when given, else the LoRA `policy` with its
    adapter disabled (the base model it wraps, without a second copy in memory)."""
    if reference is not None:
        return response_logps(reference, batch, average)
    if not isinstance(policy, PeftModel):
        raise ValueError(
            "a fully fine-tuned policy needs a frozen copy as reference; only a LoRA (PEFT) policy "
            "can serve as its own reference with the adapter disabled"
        )
    with policy.disable_adapter():
        return response_logps(policy, batch, average)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sigmoid DPO loss (mean over pairs) and the chosen and rejected rewards `beta * (policy - ref)` (detached)."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    chosen_logratios, rejected_logratios = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def classify_unknown(answer: str, name: str, abstention: str = ABSTENTION, attribute: str = ATTRIBUTE) -> str:
    """One of `UNKNOWN_OUTCOMES` for an answer about a name the model cannot know.

    `abstain`: the abstention about `name` (`abstention_for`), word for word. `confident_wrong`: an answer in
    the SFT formats with a well-formed value (every such answer is wrong: the name has no facts). `other`:
    anything else.
    """
    if answer.strip() == abstention_for(name, abstention):
        return "abstain"
    nobody = Person(name=name, facts={}, split="unknown")
    return "other" if parse_answer(answer, nobody, attribute) is None else "confident_wrong"


def abstention_report(
    model,
    tokenizer,
    known: Sequence[Person],
    unknown: Sequence[str],
    attribute: str = ATTRIBUTE,
    abstention: str = ABSTENTION,
    max_new_tokens: int = 24,
) -> dict:
    """Greedy answers to the trained question about each known person and unknown name, scored.

    Known people: `known_accuracy` (exact match and a stop, as `classify_answer`) and `known_abstain_rate`
    (what abstaining costs). Unknown names: `unknown_confident_wrong_rate`, `unknown_abstain_rate` and
    `unknown_other_rate`. `known_answer_words` and `unknown_answer_words`: mean answer length in words.
    """
    prompts = [chat_prompt(tokenizer, ask(p.name, attribute)) for p in known]
    prompts += [chat_prompt(tokenizer, ask(n, attribute)) for n in unknown]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    known_out, unknown_out = outputs[: len(known)], outputs[len(known) :]
    known_outcomes = [
        classify_answer(o["text"], o["stopped"], p, attribute, o["ended_document"]) for p, o in zip(known, known_out)
    ]
    unknown_outcomes = [
        classify_unknown(o["text"], n, abstention, attribute) if o["stopped"] else "other"
        for n, o in zip(unknown, unknown_out)
    ]

    def share(items, value):
        return sum(i == value for i in items) / len(items) if items else float("nan")

    def words(outs):
        return sum(len(o["text"].split()) for o in outs) / len(outs) if outs else float("nan")

    return {
        "known_accuracy": share(known_outcomes, "correct"),
        "known_abstain_rate": share(
            [o["text"].strip() == abstention_for(p.name, abstention) for p, o in zip(known, known_out)], True
        ),
        **{f"unknown_{name}_rate": share(unknown_outcomes, name) for name in UNKNOWN_OUTCOMES},
        "known_answer_words": words(known_out),
        "unknown_answer_words": words(unknown_out),
    }
