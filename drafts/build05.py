"""Build notebooks/05_evaluation.ipynb (cells only; `make notebooks` executes it)."""
import json
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

orig = json.load(open("/tmp/exp/05_orig.ipynb"))
src = lambda i: "".join(orig["cells"][i]["source"])
cells = []
md = lambda s: cells.append(new_markdown_cell(s.strip("\n")))
code = lambda s, **meta: cells.append(new_code_cell(s.strip("\n"), metadata=meta))
keep = lambda i: cells.append(new_code_cell(src(i), metadata={k: v for k, v in orig["cells"][i].get("metadata", {}).items() if k in ("tags", "jupyter")}) if orig["cells"][i]["cell_type"] == "code" else new_markdown_cell(src(i)))

md(r"""
# 05 · Evaluation: what did fine-tuning really teach, and what does the data do?

**After this notebook you can** run one evaluation harness on any model (exact match on seen and held-out
people, trained and unseen question wordings, stop rate, confident-wrong answers, JSON format compliance,
perplexity and the completion probe); tell *knowledge* (what the base model stores, measured by a cloze) from
*skill* (answering a question), with the base model's best prompt as the baseline SFT must beat; measure how
much data the skill needs at a fixed compute budget (the LIMA question); and run the evaluate-diagnose-fix
loop until it works, measured against the first try.

**Runs in** about six minutes on a 2-core laptop CPU, offline (the last cells print the time this run took).
Every comparison follows the course's protocol (README, "The notebooks"): runs trained past the point where
the skill appears, several seeds, the mean and range printed, verdicts computed from the seed ranges.

The same harness is on the command line: `sft-course eval --model DIR --people N` prints all of it as one JSON
line.
""")
md(r"""
## Parameters

`MODEL = None` is the bundled base model. A hub id (e.g. `"HuggingFaceTB/SmolLM2-135M"`) works for the harness
cells, but its scores on the course's made-up people will be near zero: it never read their biographies.
Every fine-tuning run is the command line's converged budget: `STEPS` optimizer steps of `BATCH_SIZE` examples
at `LR` (two epochs of all 500 training people's questions).
""")
code(r"""
MODEL = None              # None: the bundled base model; or a hub id / local folder
SEEDS = [0, 1, 2]         # the SFT runs of section 2, one per seed
SEED = SEEDS[0]
EVAL_PEOPLE = 50          # people per split scored by the harness (None: all 500)
STEPS = 236               # optimizer steps of every fine-tuning run: two epochs of the 7500 QA rows ...
BATCH_SIZE = 64           # ... in steps of 64 (the command line's budget)
LR = 6e-4                 # full fine-tuning's rate (sft_course.defaults.LEARNING_RATES)
N_SHOTS = 3               # solved examples in the few-shot baselines
SIZES = [50, 125, 250, 500]         # distinct training people in the data-size experiment ...
SIZE_SEEDS = [0, 1]                 # ... each trained STEPS steps with each of these seeds
JSON_REPEATS = 4                    # first try: the profile-as-JSON rows of every training person, repeated
JSON_TOKEN_SHARE = 0.15             # the fix: JSON rows chosen to be this share of the target tokens
""", tags=["parameters"])
md(r"""
## Load the base model and pick who is scored

Seen people are the training people the runs below train on; held-out people are never in any training file.
Every model in this notebook is scored on the same people.
""")
code(r"""
%matplotlib inline
import math
import time

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

from sft_course import load_model
from sft_course.defaults import MAX_LENGTH
from sft_course.evaluation import evaluate_model, qa_prompts, qa_report, sample_people
from sft_course.experiment import finetune, training_rows
from sft_course.generation import generate
from sft_course.masking import tokenize_examples
from sft_course.protocol import spread, verdict
from sft_course.scoring import error_kind_rates
from sft_course.tables import print_table
from sft_course.world import ATTRIBUTES, TRAIN_SPLIT, make_world

notebook_start = time.time()
plt.rcParams.update({"font.size": 11})     # readable when projected
torch.set_num_threads(1)  # a model this small runs about as fast on one thread, and far faster on a shared machine
torch.manual_seed(SEED)
base, tok = load_model(MODEL)
world = make_world()
trained_people = world.split(TRAIN_SPLIT)
_, held_out = sample_people(world, EVAL_PEOPLE, seed=SEED)
seen = trained_people[:EVAL_PEOPLE]
print(f"scoring {len(seen)} seen and {len(held_out)} held-out people on {base.device}")
""")
keep(5); keep(6); keep(7); keep(8)
md(r"""
## 2 · Knowledge vs skill: the ceiling, the baseline, and SFT

Two different things hide behind "the model can answer":

- **knowledge**: the fact is stored. A *cloze* measures it: give the start of the sentence pre-training used
  ("NAME was born in") and read the continuation. That is the completion probe, and it is the **ceiling**: SFT
  adds no facts about held-out people, so it can at best make all of this knowledge answerable;
- **skill**: answering a *question* asked in words. The fair **baseline** is the best way to ask the base model
  a question without training it: a few solved questions before the new one.

First the few-shot prompt as chat turns, the way a chat model would be asked:
""")
keep(10); keep(11); keep(12)
md(r"""
That is a strawman: the shots are chat turns, written with special tokens that this base model never saw in
pre-training, and the markup reads to it like the end of a document. A fair baseline asks in the format the base
model knows: **plain text**, no chat tokens. `few_shot_text_prompt` writes each solved example as its own
document (ended by `<|endoftext|>`, the token that separated pre-training documents), in two styles:

- `"question"`: each shot is the question in words and its answer sentence, then the question about the new
  person: the baseline;
- `"cloze"`: each shot is only the answer sentence, then the start of the answer sentence about the new person:
  no question at all, so it measures knowledge, like the 0-shot completion probe.

A base model never ends a turn, so the harness cuts its continuation at the end of the first sentence, the way a
few-shot harness uses a stop sequence, and scores that sentence.
""")
keep(15)
md(r"""
Each baseline is scored with three different draws of the solved examples (`seed`), so it has a range like the
SFT runs below.
""")
code(r"""
from sft_course.evaluation import few_shot_text_accuracy
from sft_course.probes import completion_probe

ceiling = completion_probe(base, tok, held_out)["accuracy"]
baseline = {style: [few_shot_text_accuracy(base, tok, held_out, N_SHOTS, style, world, seed=s)["accuracy"] for s in SEEDS]
            for style in ("question", "cloze")}
chat_shots = base_report["few_shot_held_out_accuracy"]
print(f"ceiling, knowledge: 0-shot cloze (completion probe), held-out people     {ceiling:.3f}")
print(f"knowledge, {N_SHOTS}-shot cloze in plain text                            {spread(baseline['cloze'])}")
print(f"baseline, skill: {N_SHOTS}-shot question in plain text                   {spread(baseline['question'])}")
print(f"strawman: {N_SHOTS}-shot question as chat turns                          {chat_shots:.3f}")
asked = few_shot_text_accuracy(base, tok, held_out[:3], N_SHOTS, "question", world, attributes=("birth_city",))
for name, attribute, text, stopped, outcome in asked["answers"]:
    print(f"question style, {name}: first sentence {text!r}")
""")
md(r"""
The question style fails on this base model, and it is worth knowing why: in this small vocabulary the question
words ("When", "Where", "Which") and the question mark are spelled with tokens that never occur in a biography
(notebook 04 lists them), so their embeddings are untrained and the model's first move is to close the odd
"sentence" with a full stop. The knowledge is there (the cloze rows) but no prompt without training turns a
question into it. Larger base models are far better in-context learners, which is why the few-shot baseline is
the one to report: if it already solves your task, you may not need SFT at all.

Now SFT: `sft_on` below is all of SFT in this course (tokenize with loss masks, then `STEPS` optimizer steps of
the loop on a copy of the base model, `sft_course.experiment.finetune`), once per seed at the command line's
converged budget. Every experiment below reuses it, so that runs differ only in their data and seed.
""")
code(r"""
def sft_on(rows, seed=SEED, steps=STEPS):
    # loss-masked tokens, then `steps` optimizer steps of the loop on a copy of the base model
    return finetune(base, tok, tokenize_examples(tok, rows, max_length=MAX_LENGTH)[0], steps, LR, BATCH_SIZE, seed)


clean_rows = training_rows("sentence")
sft_models, sft_acc = {}, []
for seed in tqdm(SEEDS, desc="SFT seeds"):
    sft_models[seed], run = sft_on(clean_rows, seed)
    sft_acc.append(qa_report(sft_models[seed], tok, held_out)["accuracy"])
print(f"{len(clean_rows)} rows, {run.steps} steps of {BATCH_SIZE} = {run.steps * BATCH_SIZE / len(clean_rows):.2f} "
      f"epochs, {run.train_seconds:.1f} s per run")
print(f"SFT, held-out exact match: {spread(sft_acc)}")
print(f"SFT vs the baseline (plain-text question): {verdict(sft_acc, baseline['question'], ('SFT', 'the baseline'))}")
print(f"SFT vs the {N_SHOTS}-shot cloze: {verdict(sft_acc, baseline['cloze'], ('SFT', 'the cloze'))}")
print(f"SFT reaches {spread(sft_acc).mean / ceiling:.0%} of the ceiling (the 0-shot cloze, {ceiling:.3f})")
""")
md(r"""
The same numbers as a picture, every seed (or draw of shots) a point, the ceiling as a line:
""")
code(r"""
fig, ax = plt.subplots(figsize=(7, 3.6))
bars = [("baseline\nquestion", baseline["question"], "tab:gray"), (f"{N_SHOTS}-shot\ncloze", baseline["cloze"], "tab:olive"),
          ("SFT", sft_acc, "tab:green")]
for i, (label, vals, color) in enumerate(bars):
    ax.scatter([i] * len(vals), vals, color=color, s=50, zorder=3)
    ax.bar(i, sum(vals) / len(vals), 0.6, color=color, alpha=0.3)
ax.axhline(ceiling, color="black", ls="--", label="ceiling: 0-shot cloze")
ax.set_xticks(range(len(bars)), [b[0] for b in bars]); ax.set_ylim(0, 1.05)
ax.set_ylabel("held-out exact match"); ax.set_title("Knowledge vs skill, every seed a point"); ax.legend(loc="upper left")
plt.show()
""")
md(r"""
Read it as two gaps. Baseline to SFT is the *skill* SFT added: answering a question asked in words. SFT to the
ceiling is the knowledge the model holds but SFT did not make answerable. The cloze shots in between show that the
knowledge was reachable all along, in pre-training's own phrasing.

## 3 · The harness on the fine-tuned model

The first seed's model, every figure of the harness beside the base model's:
""")
code(r"""
tuned = sft_models[SEED]
tuned_report = evaluate_model(tuned, tok, world, seen=seen, held_out=held_out, n_shots=0, seed=SEED)
show({"base": base_report, "SFT": tuned_report})
""")
keep(20); keep(21)
md(r"""
What it learned and what it cost, in one line each:
""")
code(r"""
ppl_rise = tuned_report["perplexity"] / base_report["perplexity"] - 1
probe_drop = base_report["completion_probe_accuracy"] - tuned_report["completion_probe_accuracy"]
gap = tuned_report["seen_accuracy"] - tuned_report["held_out_accuracy"]
print(f"Seen minus held-out: {gap:+.3f}: " + ("the model answers about new people almost as well as about the "
      "people it trained on, so it extracts stored knowledge." if gap < 0.1 else "part of what it does on seen "
      "people is recalling its training answers; on held-out people only the extraction skill helps."))
print(f"Forgetting: perplexity on fresh biographies {ppl_rise:+.1%}, completion probe {-probe_drop:+.3f}.")
print(f"JSON task: format compliance {tuned_report['json_format_compliance']:.3f} (no JSON in this SFT data).")
""")
keep(24); keep(25)
md(r"""
Read it in two parts. The tokens right after a full stop carry a share of the rise far larger than their share
of the tokens: the model learned that a sentence about a person is followed by the end of its turn, a change of
*format*, not lost knowledge, and a perplexity over whole biographies counts it as if it were. The rise on every
other token, and any drop of the completion probe, is the forgetting proper. So the headline perplexity
overstates forgetting; the probe and the other tokens say how much is real.

## 4 · Iterate: evaluate, diagnose, fix, measure again

The harness shows a gap: the JSON task, which this SFT data never taught. **First try:** add the
profile-as-JSON rows (`data/sft/train_json_profile.jsonl`, one per training person) `JSON_REPEATS` times to
the QA rows, train the same budget, and measure both what it bought and what it cost.
""")
code(r"""
from sft_course.data import read_examples
from sft_course.evaluation import json_task
from sft_course.experiment import SFT_DATA_DIR
from sft_course.generation import chat_prompt
from sft_course.world import JSON_PROFILE_QUESTION

json_rows = read_examples(SFT_DATA_DIR / "train_json_profile.jsonl")


def target_tokens(rows):
    return sum(sum(label != -100 for label in e["labels"]) for e in tokenize_examples(tok, rows, max_length=MAX_LENGTH)[0])


def measure(model):
    report = json_task(model, tok, held_out)
    return {"json_valid_rate": report["json_valid_rate"], "format_compliance": report["format_compliance"],
            "field_accuracy": report["field_accuracy"], "qa_exact_match": qa_report(model, tok, held_out)["accuracy"]}


qa_tokens = target_tokens(clean_rows)
first_rows = clean_rows + JSON_REPEATS * json_rows
first_share = JSON_REPEATS * target_tokens(json_rows) / (qa_tokens + JSON_REPEATS * target_tokens(json_rows))
first, _ = sft_on(first_rows)
tries = {"SFT, QA only": measure(tuned), "first try": measure(first)}
print(f"first try: {len(clean_rows)} QA rows + {len(json_rows)} JSON rows x {JSON_REPEATS}: "
      f"{JSON_REPEATS * len(json_rows) / len(first_rows):.0%} of the rows, {first_share:.0%} of the target tokens")
print_table(tries, [(k.replace("_", " "), k, ".3f") for k in tries["first try"]], cell_width=15)
""")
md(r"""
**Diagnosis.** The JSON answers parse, and the QA skill is gone. Two mechanisms, both measurable:

- **Long answers dominate the loss.** The loss is the mean over target tokens, and a JSON answer has many times
  the tokens of a QA answer: the JSON rows are a minority of the rows but most of the target tokens (printed
  above), so most of every step's gradient goes to JSON, and the QA skill, which appears only late in the run,
  does not appear at all.
- **The values are spelled differently.** In a biography a fact follows a space; in JSON it follows a quote, so it
  is spelled with other tokens, pieces that pre-training never tied to the fact (the untrained-token trap of
  notebook 03's short answers). That is why field accuracy stays low whatever the mix:
""")
code(r"""
value = held_out[0].facts["birth_city"]
print(f"{value!r} in a biography is spelled {tok.tokenize(' ' + value)}, as a JSON value {tok.tokenize(chr(34) + value + chr(34))}")
asked = chat_prompt(tok, JSON_PROFILE_QUESTION.format(name=held_out[0].name))
print("a held-out person's profile after the first try:", generate(first, tok, [asked], max_new_tokens=96)[0]["text"])
""")
md(r"""
**The fix** follows from the first mechanism: balance the mix by *tokens*, not rows. Keep all QA rows and add only
as many JSON rows (one per person, no repeats) as make `JSON_TOKEN_SHARE` of the target tokens; same budget,
same seed. The format is one fixed template, so a few hundred examples should be enough to teach it.
""")
code(r"""
per_json_row = target_tokens(json_rows) / len(json_rows)
n_json = round(JSON_TOKEN_SHARE * qa_tokens / (1 - JSON_TOKEN_SHARE) / per_json_row)
fixed_rows = clean_rows + json_rows[:n_json]
fixed, _ = sft_on(fixed_rows)
tries["token-balanced"] = measure(fixed)
fixed_share = target_tokens(json_rows[:n_json]) / (qa_tokens + target_tokens(json_rows[:n_json]))
print(f"token-balanced: {len(clean_rows)} QA rows + {n_json} JSON rows: {n_json / len(fixed_rows):.0%} of the rows, "
      f"{fixed_share:.0%} of the target tokens")
print_table(tries, [(k.replace("_", " "), k, ".3f") for k in tries["first try"]], cell_width=15)
qa_kept = spread(sft_acc).low <= tries["token-balanced"]["qa_exact_match"]
json_up = tries["token-balanced"]["json_valid_rate"] - tries["SFT, QA only"]["json_valid_rate"]
print(f"against the first try: valid JSON {tries['first try']['json_valid_rate']:.3f} -> "
      f"{tries['token-balanced']['json_valid_rate']:.3f}, QA exact match {tries['first try']['qa_exact_match']:.3f} -> "
      f"{tries['token-balanced']['qa_exact_match']:.3f}")
print("verdict (one seed per try): " + ("the fix works: valid JSON up by " + f"{json_up:+.3f} over QA-only SFT and QA "
      f"kept within the QA-only seed range ({spread(sft_acc)})" if qa_kept and json_up > 0 else
      "the fix does not work yet: " + ("QA fell below the QA-only seed range" if not qa_kept else "no more valid JSON")
      + "; iterate again"))
""")
md(r"""
That is the loop of evaluation-driven SFT: the harness showed a gap, the first fix bought the format and broke
the old skill, the diagnosis named the mechanism, and the second fix was measured against the first with the
same harness. Each try here is one seed: the comparison leans on differences many times larger than the QA
runs' seed range from section 2. Field accuracy needs the second mechanism fixed, which is exercise 2.

## 5 · How much data? Distinct people at a fixed compute budget (the LIMA question)

LIMA (Zhou et al., 2023, "Less Is More for Alignment") argued that a model's knowledge comes from pre-training
and SFT mostly teaches the format, so a small, carefully chosen set of examples goes a long way. Here every
run gets the same compute: `STEPS` optimizer steps of `BATCH_SIZE` examples. Only the number of distinct
training people changes (each brings a question per attribute and trained wording), so the smaller sets are
seen for more epochs. Every size is trained with each seed in `SIZE_SEEDS`; the full set reuses section 2's runs.
""")
code(r"""
size_results = {}
for n in tqdm(SIZES, desc="dataset sizes"):
    rows = training_rows("sentence", n_people=n)
    size_results[n] = {"examples": len(rows), "epochs": STEPS * BATCH_SIZE / len(rows), "held_out": [], "wrong_name": [],
                       "stop_rate": []}
    for seed in SIZE_SEEDS:
        model = sft_models[seed] if rows == clean_rows and seed in sft_models else sft_on(rows, seed)[0]
        qa = qa_report(model, tok, held_out)
        size_results[n]["held_out"].append(qa["accuracy"])
        size_results[n]["stop_rate"].append(qa["stop_rate"])
        size_results[n]["wrong_name"].append(error_kind_rates(qa, held_out)["wrong_name"])
for n, r in size_results.items():
    print(f"{n:>4} people ({r['examples']:>5} examples, {STEPS} steps of {BATCH_SIZE} = {r['epochs']:5.1f} epochs): "
          f"held-out exact match {spread(r['held_out'])}, wrong name {spread(r['wrong_name']).mean:.3f}, "
          f"stop rate {spread(r['stop_rate']).mean:.3f}")
small, large = SIZES[0], SIZES[-1]
print(f"{large} vs {small} people at equal compute: "
      f"{verdict(size_results[large]['held_out'], size_results[small]['held_out'], (f'{large} people', f'{small} people'))}")
""")
md(r"""
Every seed a point: exact match in green, the share of answers about someone else (a wrong name) in red.
""")
code(r"""
fig, ax = plt.subplots(figsize=(7, 3.6))
for n, r in size_results.items():
    ax.scatter([n] * len(r["held_out"]), r["held_out"], color="tab:green", s=50, zorder=3)
    ax.scatter([n] * len(r["wrong_name"]), r["wrong_name"], color="tab:red", marker="^", s=40, zorder=3)
ax.plot(SIZES, [spread(size_results[n]["held_out"]).mean for n in SIZES], "-", color="tab:green", label="held-out exact match")
ax.plot(SIZES, [spread(size_results[n]["wrong_name"]).mean for n in SIZES], ":", color="tab:red",
        label="wrong name (about someone else)")
ax.set_xscale("log"); ax.set_xticks(SIZES, [str(n) for n in SIZES]); ax.set_xlabel("distinct training people (log)")
ax.set_ylim(0, 1.05); ax.set_title(f"Data size at {STEPS} steps of {BATCH_SIZE}, every seed a point"); ax.legend(fontsize=10)
plt.show()
print(f"notebook so far: {time.time() - notebook_start:.0f} s")
""")
md(r"""
The wrong-name curve says why the small sets fail: with few distinct names, the model learns the names of its
training people instead of copying the name from the question, and more epochs over the same people only
deepen that. How does that square with LIMA? LIMA's thousand examples were chosen for quality and *diversity*
of prompts, fed to a 65B model that already follows text well, and what they taught was a style the model
nearly had. Here the skill to learn (read a question in words the base model never saw, copy a new name,
retrieve the fact) is not in the base model, and at a fixed budget it is the number of *distinct* people, not
the epochs, that teaches it. Both are true: how much data you need depends on how far the skill is from what the
base model already does.

## Run it bigger

Everything above is sized for a laptop. For numbers you would put in a report:

- `EVAL_PEOPLE = None` scores all 500 people of each split (about ten times the generation time);
- more seeds (`SEEDS`, `SIZE_SEEDS`), more sizes (`SIZES = [10, 25, 50, 100, 250, 500]`), and a JSON try per seed;
- the package's other data-quality tools: `sft_course.data_quality.add_label_noise` (wrong labels for a share of
  the facts) and `one_template` (one question wording per attribute) give the noisy-label and low-diversity
  experiments; run each with several seeds at this budget before reading a difference;
- on a GPU, set `MODEL` to a hub base model and replace the world's questions with your own evaluation set;
  the harness functions (`score_answers`, `score_json_answers`, `perplexity`) take any people and texts.

From the command line: `sft-course sft --out runs/full` then `sft-course eval --model runs/full` (all people).

## Exercises

1. Find the tuned model's weakest attribute on held-out people and print three of its wrong answers with
   their outcomes. Are they confident wrong or off format?
2. The second mechanism of section 4: how many of the JSON values' tokens never occur in a biography? Count, over
   the held-out people's JSON answers, the share of value tokens that `new_token_ids` flags, and compare with the
   same values written after a space.
3. Cleaning noisy data without a clean copy: corrupt 30% of the facts of the first hundred training people,
   then rank their rows by the *base* model's loss on the response read as plain text (the base model knows
   the facts in that form). What share of the highest-loss 30% of the rows is really noisy?

Solutions are in the collapsed cell below (click to expand); it runs under the test suite too.
""")
cells.append(new_code_cell(r"""
# Solution 1: the weakest attribute and some of its wrong answers
weakest = min(ATTRIBUTES, key=lambda a: tuned_report["held_out_" + a])
r = qa_report(tuned, tok, held_out, attributes=(weakest,))
wrong = [a for a in r["answers"] if a.outcome != "correct"][:3]
print(f"weakest attribute: {weakest} ({tuned_report['held_out_' + weakest]:.3f})")
truth = {p.name: p.facts[weakest] for p in held_out}
for a in wrong:
    print(f"  {a.outcome:<15} {a.text!r} (truth: {truth[a.person]})")

# Solution 2: value tokens that pre-training never produced, in JSON and after a space
from sft_course.lora import new_token_ids

new = set(new_token_ids(tok, json_rows + clean_rows, world.biographies))
values_ = [p.facts[a] for p in held_out for a in ATTRIBUTES]
in_json = [t for v in values_ for t in tok(chr(34) + v + chr(34), add_special_tokens=False)["input_ids"]]
after_space = [t for v in values_ for t in tok(" " + v, add_special_tokens=False)["input_ids"]]
print(f"2. new tokens: {sum(t in new for t in in_json) / len(in_json):.1%} of the JSON value tokens, "
      f"{sum(t in new for t in after_space) / len(after_space):.1%} after a space")

# Solution 3: loss-based detection of noisy labels with the base model, responses read as plain text
from sft_course.data_quality import add_label_noise, noisy_label_detection
from sft_course.evaluation import text_losses

noisy_rows, _ = add_label_noise(training_rows("sentence", n_people=100), 0.3, seed=SEED)
losses = text_losses(base, tok, [r["response"] for r in noisy_rows], batch_size=256)
found = noisy_label_detection(noisy_rows, losses, n_flagged=round(0.3 * len(losses)))
print(f"3. with {0.3:.0%} of the facts corrupted: of the {len(found['flagged'])} highest-loss rows (the top {0.3:.0%}), "
      f"{found['precision']:.1%} are noisy "
      f"(a random pick: {found['noisy_share']:.1%})")
print(f"notebook run time: {time.time() - notebook_start:.0f} s")
""".strip("\n"), metadata={"jupyter": {"source_hidden": True}}))

nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                          "language_info": {"name": "python"}})
nbformat.write(nb, "notebooks/05_evaluation.ipynb")
print(len(cells), "cells")
