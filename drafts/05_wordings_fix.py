"""Notebook 05's wordings fix (section 4) over 3 seeds, outside the notebook (issue 20: every verdict on 3 seeds).

05's first fix (3 new wordings per attribute, one new row per fact) gave unseen wordings 0.620 (0.492 to 0.716,
3 seeds) against the clean runs' 0.425 (0.324 to 0.540): within the spread. This script tries fixes with more
diversity at the same compute (05's 200 steps of 32 at 1.2e-3), on 05's 50 held-out people.

Usage: `flock /tmp/heavy.lock .venv/bin/python drafts/05_wordings_fix.py VARIANT [VARIANT ...]`, VARIANT one of
`three:R` (05's three new wordings) or `ten:R` (ten per attribute), R new rows per fact, or `clean` (no new rows).
"""

import os
import sys
import time

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")

from sft_course import load_model  # noqa: E402
from sft_course.defaults import MAX_LENGTH  # noqa: E402
from sft_course.evaluation import qa_report, sample_people  # noqa: E402
from sft_course.experiment import finetune, training_rows  # noqa: E402
from sft_course.masking import tokenize_examples  # noqa: E402
from sft_course.protocol import spread  # noqa: E402
from sft_course.world import QUESTION_TEMPLATES, make_world  # noqa: E402

STEPS, BATCH_SIZE, LR, SEEDS = 200, 32, 1.2e-3, (0, 1, 2)

THREE = {
    "birth_date": ("Give the birthday of {name}.", "{name} was born when?", "Which day is the birthday of {name}?"),
    "birth_city": ("Give the hometown of {name}.", "What city did {name} come from?", "{name} was born in which city?"),
    "university": ("Give the alma mater of {name}.", "At which university did {name} study?",
                   "{name} graduated from which school?"),
    "major": ("Give the major of {name}.", "What subject did {name} study at university?",
              "{name} majored in which field?"),
    "employer": ("Give the company {name} works for.", "Who employs {name}?", "{name} works at which company?"),
}
TEN = {
    "birth_date": THREE["birth_date"] + (
        "State the birth date of {name}.", "What is {name}'s date of birth?", "Provide the birthday of {name}.",
        "When is the birthday of {name}?", "Say when {name} was born.", "Identify the birth date of {name}.",
        "I need the birth date of {name}."),
    "birth_city": THREE["birth_city"] + (
        "State the birthplace of {name}.", "What is {name}'s hometown?", "Provide the city of birth of {name}.",
        "In what town was {name} born?", "Say where {name} was born.", "Identify the birth city of {name}.",
        "I need the birthplace of {name}."),
    "university": THREE["university"] + (
        "State where {name} studied.", "What is {name}'s alma mater?", "Provide the school {name} attended.",
        "Which school did {name} attend?", "Say which university {name} attended.",
        "Identify the school of {name}.", "I need the university {name} attended."),
    "major": THREE["major"] + (
        "State the field {name} studied.", "What was {name}'s major?", "Provide the subject {name} majored in.",
        "Which discipline did {name} study?", "Say what {name} studied.", "Identify the major of {name}.",
        "I need the field of study of {name}."),
    "employer": THREE["employer"] + (
        "State who employs {name}.", "What is {name}'s company?", "Provide the workplace of {name}.",
        "Which firm does {name} work at?", "Say where {name} is working.", "Identify the company of {name}.",
        "I need the employer of {name}."),
}
evaluation = {t for a in QUESTION_TEMPLATES for kind in QUESTION_TEMPLATES[a] for t in QUESTION_TEMPLATES[a][kind]}
for ts in TEN.values():
    for t in ts:
        assert t not in evaluation and not t.startswith(("Name ", "Tell ")), t

start = time.time()
base, tok = load_model(None)
world = make_world()
_, held_out = sample_people(world, 50, seed=0)
clean_rows = training_rows("sentence")
clean_examples, _ = tokenize_examples(tok, clean_rows, max_length=MAX_LENGTH)
facts = [r for r in clean_rows if r["paraphrase"] == 0]


def new_examples(wordings, per_fact):
    rows = []
    for i, r in enumerate(facts):
        ws = wordings[r["attribute"]]
        for k in range(per_fact):
            rows.append({**r, "instruction": ws[(i * per_fact + k) % len(ws)].format(name=r["person"]),
                         "paraphrase": None})
    return tokenize_examples(tok, rows, max_length=MAX_LENGTH)[0]


for variant in sys.argv[1:]:
    name, _, per_fact = variant.partition(":")
    extra = [] if name == "clean" else new_examples({"three": THREE, "ten": TEN}[name], int(per_fact))
    trained, unseen = [], []
    t0 = time.time()
    for seed in SEEDS:
        model, _ = finetune(base, tok, clean_examples + extra, STEPS, LR, BATCH_SIZE, seed)
        trained.append(qa_report(model, tok, held_out)["accuracy"])
        unseen.append(qa_report(model, tok, held_out, kind="unseen", paraphrase="rotate")["accuracy"])
    print(f"{variant:<8} +{len(extra)} rows: trained {spread(trained)} {trained}, unseen {spread(unseen)} {unseen} "
          f"({time.time() - t0:.0f} s)", flush=True)
print(f"{time.time() - start:.0f} s")
