"""Notebook 05's JSON iteration, tried outside the notebook (issue 20, item 3: "An iteration that works").

Every run is at 05's rate and batch (steps of 32 at 1.2e-3) and scored on 05's 50 held-out people: the profile as
JSON (`json_task`: valid JSON, format compliance, field accuracy, stop rate) and QA exact match (`qa_report`).
Two sample JSON answers are printed for each run.

Usage: `flock /tmp/heavy.lock .venv/bin/python drafts/05_json_iteration.py ITEM [ITEM ...]`, each ITEM one of
- `clean:SEED`: 05's clean QA run (200 steps); kept in /tmp/nb05_cleanSEED.pt and reloaded by later calls;
- `first:SEED:R`: the first try, from the base model: the QA rows plus the JSON rows R times (200 steps);
- `stage2:SEED:K:N_QA:LR`: a second stage from `clean:SEED` (listed before it): K steps on the 500 JSON rows plus
  N_QA QA rows drawn at random;
- `mean2:SEED:K:N_QA:LR`: the same, with the embedding rows that neither a biography nor the QA rows contain (206
  tokens: braces, quotes, capital letters, the pieces of the keys and values) set to the mean of the others first;
- `grouped:SEED:R`: the first try's data (QA rows + JSON rows R times, 200 steps from the base model) in a
  length-grouped batch order: each epoch's seeded shuffle is cut into batches of QA rows only and batches of JSON
  rows only, and the batches are shuffled. Every example once per epoch; a JSON batch pads to ~120 tokens, a QA
  batch to ~35, and each step's loss is the mean over its own target tokens, so the JSON rows get a share of the
  steps equal to their share of the rows (not of the target tokens, as in a mixed batch).
- `mixed:SEED:R[:MB]`: the first try's data and order, each step split into micro-batches of similar lengths
  (`TrainConfig.micro_batch_tokens`, MB slots each, default 1200): the same gradient, less padding;
- `meanmix:SEED:R[:MB]`: the same, with the untrained rows set to the mean first (R may be fractional).
Every first/grouped run also prints three QA answers (the diagnosis: JSON format bleeding into QA, or no stop).
"""

import copy
import os
import random
import sys
import time

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

import torch  # noqa: E402

from sft_course import load_model  # noqa: E402
from sft_course.data import read_examples  # noqa: E402
from sft_course.defaults import MAX_LENGTH  # noqa: E402
from sft_course.evaluation import json_task, qa_report, sample_people  # noqa: E402
from sft_course.experiment import SFT_DATA_DIR, finetune, training_rows  # noqa: E402
from sft_course.generation import chat_prompt, generate  # noqa: E402
from sft_course.masking import tokenize_examples  # noqa: E402
from sft_course import training  # noqa: E402
from sft_course.world import JSON_PROFILE_QUESTION, make_world  # noqa: E402

STEPS, BATCH_SIZE, LR = 200, 32, 1.2e-3  # notebook 05's budget

start = time.time()
base, tok = load_model(None)
world = make_world()
_, held_out = sample_people(world, 50, seed=0)
clean_examples, _ = tokenize_examples(tok, training_rows("sentence"), max_length=MAX_LENGTH)
json_examples, _ = tokenize_examples(
    tok, read_examples(SFT_DATA_DIR / "train_json_profile.jsonl"), max_length=MAX_LENGTH
)


def grouped_step_batches(n_qa):
    # training.step_batches with the batches of one epoch made of QA rows only or JSON rows only (index >= n_qa)
    def step_batches(n_examples, batch_size, seed, epoch):
        order = list(range(n_examples))
        rng = random.Random(seed * 100_003 + epoch)
        rng.shuffle(order)
        pools = [[i for i in order if i < n_qa], [i for i in order if i >= n_qa]]
        batches = [pool[j : j + batch_size] for pool in pools for j in range(0, len(pool), batch_size)]
        rng.shuffle(batches)
        return batches

    return step_batches


def measure(model, item, train_seconds):
    if item.startswith(("first", "grouped")):
        for a in qa_report(model, tok, held_out[:3])["answers"][:3]:
            print("    QA:", a.outcome, repr(a.text[:120]))
    prompts = [chat_prompt(tok, JSON_PROFILE_QUESTION.format(name=p.name)) for p in held_out[:2]]
    for out in generate(model, tok, prompts, max_new_tokens=96):
        print("   ", repr(out["text"][:200]), out["stop_token"])
    js = json_task(model, tok, held_out)
    qa = qa_report(model, tok, held_out)["accuracy"]
    print(
        f"{item}: valid {js['json_valid_rate']:.3f} compliance {js['format_compliance']:.3f} "
        f"fields {js['field_accuracy']:.3f} stop {js['stop_rate']:.2f} QA {qa:.3f} | train {train_seconds:.1f} s",
        flush=True,
    )


def mean_init_untrained_rows(model):
    # rows that neither a biography nor the QA rows contain get the mean of the rows that they do contain
    trained = {t for b in world.biographies for t in tok(b, add_special_tokens=False)["input_ids"]}
    trained |= {t for e in clean_examples for t in e["input_ids"]}
    new = sorted({t for e in json_examples for t in e["input_ids"]} - trained)
    weight = model.get_input_embeddings().weight  # tied with the output layer
    with torch.no_grad():
        weight[new] = weight[sorted(trained)].mean(0)
    print(f"    {len(new)} untrained rows set to the mean: {tok.convert_ids_to_tokens(new)[:20]} ...")


clean = {}
for item in sys.argv[1:]:
    kind, seed, *rest = item.split(":")
    seed = int(seed)
    t = time.time()
    if kind == "clean":
        path = f"/tmp/nb05_clean{seed}.pt"
        if os.path.exists(path):
            model = copy.deepcopy(base)
            model.load_state_dict(torch.load(path))
        else:
            model, _ = finetune(base, tok, clean_examples, STEPS, LR, BATCH_SIZE, seed)
            torch.save(model.state_dict(), path)
        clean[seed] = model
    elif kind == "first":
        model, _ = finetune(base, tok, clean_examples + int(rest[0]) * json_examples, STEPS, LR, BATCH_SIZE, seed)
    elif kind in ("mixed", "meanmix"):
        # `mixed:SEED:R[:MB]`: the first try's mix (QA rows + JSON rows R times) from the base model, with each
        # step split into micro-batches of similar lengths (`TrainConfig.micro_batch_tokens` MB, default 1200: the
        # same gradient as one batch, less padding); `meanmix` sets the untrained rows to the mean first
        start_model = copy.deepcopy(base)
        if kind == "meanmix":
            mean_init_untrained_rows(start_model)
        mb = int(rest[1]) if len(rest) > 1 else 1200
        config = training.TrainConfig(lr=LR, total_steps=STEPS, batch_size=BATCH_SIZE, seed=seed, eval_every=0,
                                      micro_batch_tokens=mb)
        reps = float(rest[0])
        data = clean_examples + json_examples * int(reps) + json_examples[: round((reps % 1) * len(json_examples))]
        torch.manual_seed(seed)
        training.train(start_model, data, tok.pad_token_id, config, progress=False)
        model = start_model.eval()
    elif kind == "grouped":
        plain = training.step_batches
        training.step_batches = grouped_step_batches(len(clean_examples))
        try:
            model, _ = finetune(base, tok, clean_examples + int(rest[0]) * json_examples, STEPS, LR, BATCH_SIZE, seed)
        finally:
            training.step_batches = plain
    elif kind in ("stage2", "mean2"):
        steps, n_qa, lr = int(rest[0]), int(rest[1]), float(rest[2])
        start_model = copy.deepcopy(clean[seed])
        if kind == "mean2":
            mean_init_untrained_rows(start_model)
        replay = random.Random(seed).sample(clean_examples, n_qa)
        model, _ = finetune(start_model, tok, json_examples + replay, steps, lr, BATCH_SIZE, seed)
    else:
        raise SystemExit(f"unknown item {item!r}: see the docstring")
    measure(model, item, time.time() - t)
print(f"total {time.time() - start:.0f} s")
