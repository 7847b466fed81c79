"""Build notebooks/04_lora_vs_full.ipynb (cells only; `make notebooks` executes it)."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = []
md = lambda s: cells.append(new_markdown_cell(s.strip("\n")))
code = lambda s, **meta: cells.append(new_code_cell(s.strip("\n"), metadata=meta))

md(r"""
# 04 · LoRA vs full fine-tuning

**After this notebook you can** write a LoRA layer yourself and check it against PEFT's; compare LoRA with
full fine-tuning the fair way (each at its own best learning rate, trained until the skill has appeared and
flattened, three seeds, verdicts computed from the seed ranges): trainable parameters, optimizer memory, time,
held-out accuracy and forgetting side by side; recognise the *untrained-token trap* that plain LoRA walks into;
read a rank sweep and a learning-rate sweep without mistaking noise for an optimum; and merge an adapter.

**Runs in** about five minutes on a 2-core laptop CPU (the last cell prints the time this run took): six runs
at the command line's full budget (two methods, three seeds) are most of it. Fewer people for more epochs would
be cheaper, but here it changes the lesson: measured while planning this notebook, full fine-tuning on half of
the training people for the same number of steps stopped far below what it reaches with all of them.

The LoRA helpers live in `sft_course/lora.py` (what they count in `accounting.py`, the trap in
`end_of_turn.py`, the seed statistics in `protocol.py`); `sft-course sft --method lora` uses the same code.
""")
md(r"""
## Parameters

The main runs use the command line's budget and rates (`sft_course.defaults`): `EPOCHS` epochs of all 500
training people's questions, answered in a full sentence, in steps of `BATCH_SIZE` examples, full fine-tuning
at `FULL_LR` and LoRA at `LORA_LR`, each repeated for every seed in `SEEDS`. The sweeps of learning rate and
rank train `SWEEP_STEPS` steps each (one seed), all at the same budget so they can be read side by side.
`MODEL` takes a hub id or a local folder: the questions are about this course's synthetic world, so a hub model
will not know the answers, but every measurement of cost still applies.
""")
code(r"""
MODEL = None            # None: the bundled base model; or a hub id / local folder
SEEDS = [0, 1, 2]       # every compared run is repeated with each seed
SEED = SEEDS[0]         # the seed of the sweeps and of the single runs
PEOPLE = None           # training people (None: all 500), 15 questions each
EPOCHS = 2              # the command line's: the QA skill appears between the first and the second epoch
BATCH_SIZE = 64
FULL_LR, LORA_LR = 6e-4, 3e-3          # the command line's rates (sft_course.defaults.LEARNING_RATES)
EVAL_PEOPLE = 50        # people scored per split (seen / held out), 5 questions each
SWEEP_STEPS = 20        # steps of every sweep run (learning rate and rank), one seed
FULL_LRS = [2e-4, 6e-4, 2e-3]
LORA_LRS = [1e-3, 3e-3, 1e-2]
RANK, ALPHA = 8, 16
RANKS = [2, 8, 32]                     # rank sweep at LORA_LR, alpha = 2 * rank
""", tags=["parameters"])
md(r"""
## Setup: the base model and the data

Every run trains on the same tokenized examples in the same seeded order, with the same schedule and batch
size; only the set of trained parameters and the learning rate differ. "Seen" people are people the training
data asks about; "held-out" people are never mentioned in SFT, so a correct answer about them can only come
from what pre-training stored.
""")
code(r"""
%matplotlib inline
import copy
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

from sft_course import load_model
from sft_course.accounting import (adapter_size_bytes, total_parameters, trainable_parameters, training_memory_bytes,
                                   weights_size_bytes)
from sft_course.collate import pad_batch
from sft_course.defaults import MAX_LENGTH
from sft_course.end_of_turn import end_of_turn_loss, per_token_answer_loss
from sft_course.evaluation import fresh_biographies, perplexity, qa_report, sample_people
from sft_course.experiment import eval_loss_rows, finetune, finetune_curve, training_rows
from sft_course.formats import to_messages
from sft_course.lora import add_lora, chat_token_ids, merge, new_token_ids
from sft_course.loss import evaluate_loss
from sft_course.masking import tokenize_examples
from sft_course.probes import completion_probe
from sft_course.protocol import spread, verdict
from sft_course.tables import print_table
from sft_course.world import ATTRIBUTES, make_world

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # a deprecation inside PEFT, not ours
plt.rcParams.update({"font.size": 11})     # readable when projected
started = time.perf_counter()
torch.set_num_threads(1)  # a model this small runs about as fast on one thread, and far faster on a shared machine
torch.manual_seed(SEED)
base, tok = load_model(MODEL)
device = base.device
world = make_world()
rows = training_rows("sentence", n_people=PEOPLE)
examples, report = tokenize_examples(tok, [to_messages(r) for r in rows], max_length=MAX_LENGTH)
steps = round(EPOCHS * len(examples) / BATCH_SIZE)
seen, held_out = sample_people(world, EVAL_PEOPLE, seed=SEED)
held_rows = eval_loss_rows("sentence", n_people=EVAL_PEOPLE)             # held-out people's questions, answered
held_examples, _ = tokenize_examples(tok, [to_messages(r) for r in held_rows], max_length=MAX_LENGTH)
trap_examples = [to_messages(r) for r in held_rows[:50]]
bios = fresh_biographies(held_out)          # pre-training-style text, new wording: for forgetting
n_base = total_parameters(base)
print(f"{type(base).__name__} with {n_base:,} parameters on {device}")
print(f"{len(examples)} training examples about {len(rows) // 15} people; main runs: {steps} steps of {BATCH_SIZE} "
      f"= {steps * BATCH_SIZE / len(examples):.2f} epochs; scoring {len(seen)} seen and {len(held_out)} held-out people")
""")
md(r"""
## What LoRA trains, written out

LoRA freezes every base weight $W$ ($d_\text{out}\times d_\text{in}$) and learns a low-rank update:
$W x + \frac{\alpha}{r} B A x$ with $A$ ($r\times d_\text{in}$, random) and $B$ ($d_\text{out}\times r$, zeros), so
the wrapped model starts out *identical* to the base model. Here is a whole LoRA linear layer; the cell after
it checks that PEFT's layer computes the same thing from the same weights.
""")
code(r"""
class LoRALinear(torch.nn.Module):
    # W x + (alpha / r) * B (A x): W frozen, only A and B trained
    def __init__(self, base_layer: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base_layer = base_layer.requires_grad_(False)
        self.A = torch.nn.Parameter(torch.randn(rank, base_layer.in_features) / rank**0.5)   # random
        self.B = torch.nn.Parameter(torch.zeros(base_layer.out_features, rank))               # zero: starts as W
        self.scale = alpha / rank

    def forward(self, x):
        return self.base_layer(x) + self.scale * (x @ self.A.T) @ self.B.T

    def merged_weight(self):  # what merging folds into W
        return self.base_layer.weight + self.scale * self.B @ self.A
""")
md(r"""
PEFT's `LoraConfig(target_modules="all-linear")` puts such an adapter on every linear layer of the
transformer blocks (q, k, v, o and the three MLP projections), not on the output layer. Below, PEFT wraps the
model (plain LoRA: no embedding row trained), its B matrix in one layer is filled with random numbers (as if
trained), and our `LoRALinear` gets the same three matrices: the outputs must agree.
""")
code(r"""
# NBVAL_CHECK_OUTPUT
demo = add_lora(copy.deepcopy(base), tok, rank=RANK, alpha=ALPHA, train_chat_tokens=False)
q_proj = demo.base_model.model.model.layers[0].self_attn.q_proj
ids = torch.tensor([examples[0]["input_ids"]], device=device)
with torch.no_grad():
    print("before training the LoRA model computes exactly the base model's logits (B = 0):",
          torch.equal(demo(input_ids=ids).logits, base(input_ids=ids).logits))
    q_proj.lora_B["default"].weight.normal_(generator=torch.Generator().manual_seed(SEED))   # as if trained
    ours = LoRALinear(q_proj.base_layer, RANK, ALPHA)
    ours.A.copy_(q_proj.lora_A["default"].weight)
    ours.B.copy_(q_proj.lora_B["default"].weight)
    x = torch.randn(4, 7, q_proj.base_layer.in_features, generator=torch.Generator().manual_seed(SEED))
    print("our LoRALinear equals PEFT's layer:", torch.allclose(ours(x), q_proj(x), atol=1e-6))
    print("and the merged weight gives the same output:",
          torch.allclose(x @ ours.merged_weight().T, q_proj(x), atol=1e-5))
print("layer 0 q_proj: base", tuple(q_proj.base_layer.weight.shape), "frozen; A", tuple(ours.A.shape),
      "B", tuple(ours.B.shape), "trained; scale alpha/r =", ours.scale)
""")
code(r"""
n_lora, n_wrapped = trainable_parameters(demo), total_parameters(demo)
print(f"PEFT's trainable% = {n_lora:,} / {n_wrapped:,} = {n_lora / n_wrapped:.2%}: its denominator is every parameter "
      f"of the wrapped model, the adapters included")
print(f"this notebook's share = {n_lora:,} / {n_base:,} = {n_lora / n_base:.2%}: trainable parameters over the base "
      f"model's {n_base:,}, the number full fine-tuning trains (used in every table below)")
del demo
""")
md(r"""
## Tokens that pre-training never saw

An embedding row is trained only by the text it occurs in. The chat tokens `<|im_start|>` and `<|im_end|>`
never occur in pre-training, and neither does anything else that only the chat format brings: with a small
BPE vocabulary trained on biographies, the question words ("When", "Where", "Which") break into pieces that
the biographies never contain. Full fine-tuning trains those rows; plain LoRA keeps them at their initial
values. `new_token_ids` lists them by comparing the tokens of the SFT data with those of the pre-training text.
The LoRA runs below train these rows too (PEFT's `trainable_token_indices`), as `sft-course sft --method lora`
does; what happens without them is its own section further down.
""")
code(r"""
new_ids = new_token_ids(tok, training_rows("sentence"), world.biographies) if MODEL is None else chat_token_ids(tok)
print(f"{len(new_ids)} token types in the SFT data never occur in pre-training:")
print(" ".join(repr(t) for t in tok.convert_ids_to_tokens(new_ids)))
for word in ("When", "Where", "Which"):
    pieces = tok(word, add_special_tokens=False)["input_ids"]
    print(f"{word!r} -> {tok.convert_ids_to_tokens(pieces)}, all new to the model: {set(pieces) <= set(new_ids)}")
""")
md(r"""
## One function per run, measuring everything

`run` trains with the package's `finetune_curve`: a copy of the base model (wrapped for LoRA if asked, with
`tokens` saying which embedding rows train as well), exactly `n_steps` optimizer steps of the course loop,
paused at the steps in `pauses` to score held-out exact match (through a checkpoint, so the pauses do not change
the run). It also counts the memory one training step holds (weights, gradients, AdamW's two states per
trainable parameter, and the activations kept for the backward pass; on a GPU the allocator's real peak too)
and the held-out answer loss (teacher-forced, cheap, and informative before exact match moves). `evaluate`
scores exact-match answers, the stop rate under greedy decoding and under sampling at temperature 1, and two
forgetting measures: perplexity on fresh pre-training-style biographies of held-out people and the completion
probe ("NAME was born in" → city) on the same people.
""")
code(r"""
def lora_options(tokens="new", rank=RANK, alpha=ALPHA):
    # the adapters, plus the embedding rows trained: "none" (plain LoRA) or every "new" token
    return {"rank": rank, "alpha": alpha, "train_chat_tokens": tokens != "none",
            "train_tokens": new_ids if tokens == "new" else ()}


def held_out_accuracy(model):
    return qa_report(model, tok, held_out)["accuracy"]


def run(method, lr, n_steps=None, seed=SEED, tokens="new", pauses=(), **lora):
    n_steps = n_steps or steps
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    options = lora_options(tokens, **lora) if method == "lora" else None
    model, result, curve = finetune_curve(base, tok, examples, n_steps, lr, held_out_accuracy, at_steps=pauses,
                                          batch_size=BATCH_SIZE, seed=seed, lora_options=options)
    memory = training_memory_bytes(model, pad_batch(examples[:BATCH_SIZE], tok.pad_token_id))
    record = {"trainable": trainable_parameters(model), "optimizer_bytes": memory["optimizer"],
              "memory_bytes": memory["total"], "activation_bytes": memory["activations"],
              "train_s": result.train_seconds, "lr": lr, "seed": seed, "curve": curve, "held_out_acc": curve[-1][1],
              "held_out_loss": evaluate_loss(model, held_examples, tok.pad_token_id)}
    if device.type == "cuda":
        record["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return model, record


def evaluate(model, sampled=False):
    held = qa_report(model, tok, held_out)
    scores = {"held_out_acc": held["accuracy"], "stop_greedy": held["stop_rate"],
              "perplexity": perplexity(model, tok, bios), "probe": completion_probe(model, tok, held_out)["accuracy"]}
    if sampled:
        scores["stop_sampled"] = qa_report(model, tok, held_out, do_sample=True, temperature=1.0, seed=SEED)["stop_rate"]
        scores.update(end_of_turn_loss(model, tok, trap_examples))
    return scores
""")
md(r"""
## Learning rate and rank, at equal steps

First the landscape, cheaply: every sweep run trains `SWEEP_STEPS` steps with the first seed, so the learning-rate
sweep and the rank sweep can be read side by side. At this budget exact match has not moved yet, so the runs
are scored by the held-out answer loss. LoRA's update is the product of two small matrices, one starting at
zero, so early steps change the model far less than a full step at the same rate: LoRA is usually run at a
learning rate about an order of magnitude higher than full fine-tuning (Schulman et al., *LoRA Without Regret*,
Thinking Machines, 2025). The rank sweep keeps $\alpha = 2r$, so the scale $\alpha/r$ stays 2 and only the number
of directions changes. Both panels start their loss axis at zero.
""")
code(r"""
sweep = {"full": {}, "LoRA": {}}
for method, lrs in (("full", FULL_LRS), ("LoRA", LORA_LRS)):
    for lr in tqdm(lrs, desc=f"{method} learning rates"):
        sweep[method][lr] = run(method.lower(), lr, n_steps=SWEEP_STEPS)[1]
ranks = {RANK: sweep["LoRA"][LORA_LR]} if LORA_LR in sweep["LoRA"] else {}
for rank in tqdm([r for r in RANKS if r not in ranks], desc="ranks"):
    ranks[rank] = run("lora", LORA_LR, n_steps=SWEEP_STEPS, rank=rank, alpha=2 * rank)[1]
for method, records in sweep.items():
    print(f"{method:>4}: " + ", ".join(f"lr {lr:g} loss {r['held_out_loss']:.3f}" for lr, r in records.items()))
print("LoRA: " + ", ".join(f"r {r} ({ranks[r]['trainable']:,} trained) loss {ranks[r]['held_out_loss']:.3f}" for r in RANKS))
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for i, (method, records) in enumerate(sweep.items()):
    lrs = sorted(records)
    left.plot(lrs, [records[lr]["held_out_loss"] for lr in lrs], "o-", color=f"C{i}", label=method)
left.set_xscale("log"); left.set_xlabel("peak learning rate"); left.set_ylabel("held-out answer loss")
left.set_ylim(bottom=0); left.set_title(f"learning rate, {SWEEP_STEPS} steps"); left.legend()
right.plot(RANKS, [ranks[r]["held_out_loss"] for r in RANKS], "o-", color="C1", label=f"LoRA, lr {LORA_LR:g}")
right.set_xscale("log", base=2); right.set_xticks(RANKS, [str(r) for r in RANKS]); right.set_xlabel("rank r")
right.set_ylim(bottom=0); right.set_title(f"rank, {SWEEP_STEPS} steps"); right.legend()
plt.tight_layout(); plt.show()
best = {method: min(records, key=lambda lr: records[lr]["held_out_loss"]) for method, records in sweep.items()}
spread_of = lambda losses: max(losses) / min(losses)
lr_effect = min(spread_of([r["held_out_loss"] for r in records.values()]) for records in sweep.values())
rank_effect = spread_of([r["held_out_loss"] for r in ranks.values()])
print(f"lowest loss at: full {best['full']:g}, LoRA {best['LoRA']:g} ({best['LoRA'] / best['full']:g}x full's rate); "
      f"the main runs use the command line's {FULL_LR:g} and {LORA_LR:g}" +
      ("" if (best["full"], best["LoRA"]) == (FULL_LR, LORA_LR) else
       " (a short run favours higher rates than a full one; the command line's were chosen at the full budget)"))
print(f"reading: the rank moves the loss by a factor {rank_effect:.2f} from r = {min(RANKS)} to r = {max(RANKS)}, each "
      f"method's learning rate by at least {lr_effect:.2f}: at equal steps the learning rate matters "
      + ("more than the rank" if lr_effect > rank_effect else "no more than the rank") + " (one seed per point)")
""")
md(r"""
## Full fine-tuning vs LoRA: three seeds, converged

Each method at its rate, the same steps on the same examples, once per seed. Every run pauses after its first
epoch to score held-out exact match (the first seed's runs also half-way through the second), so the table shows
the skill appearing between the first and the second epoch and flattening by the end: the end of the run is past
that transition for every seed. The verdicts are computed by `protocol.verdict`: a difference is called one only
when the seed ranges do not overlap. Forgetting is measured on each method's own runs, at the rate it uses.
""")
code(r"""
before = evaluate(base)
main = {"full": ("full", FULL_LR), "LoRA": ("lora", LORA_LR)}
epoch = round(len(examples) / BATCH_SIZE)
by_seed, models = {name: {} for name in main}, {}
for seed, name in tqdm([(s, n) for s in SEEDS for n in main], desc="main runs"):
    method, lr = main[name]
    pauses = [epoch, round(1.5 * epoch)] if seed == SEED else [epoch]
    model, record = run(method, lr, seed=seed, pauses=pauses)
    record.update(evaluate(model))
    record["ppl_change"] = record["perplexity"] - before["perplexity"]
    record["probe_drop"] = before["probe"] - record["probe"]
    by_seed[name][seed], models[name, seed] = record, model
""")
code(r"""
def values(name, key):
    return [by_seed[name][s][key] for s in SEEDS]


print("held-out exact match during training (epochs: accuracy)")
for name in main:
    for seed in SEEDS:
        points = "  ".join(f"{s / epoch:.1f}: {acc:.3f}" for s, acc in by_seed[name][seed]["curve"])
        print(f"  {name:<5} seed {seed}   {points}")
print(f"\nbase model: held-out accuracy {before['held_out_acc']:.3f}, perplexity {before['perplexity']:.3f}, "
      f"completion probe {before['probe']:.3f}")
print(f"{len(SEEDS)} seeds each, {steps} steps of {BATCH_SIZE} ({EPOCHS} epochs); mean (lowest to highest)")
rows_to_show = [("held-out accuracy", "held_out_acc", True), ("perplexity change", "ppl_change", False),
                ("completion probe drop", "probe_drop", False)]
verdicts = {}
for label, key, higher in rows_to_show:
    a, b = values("LoRA", key), values("full", key)
    verdicts[key] = verdict(a, b, names=("LoRA", "full fine-tuning"), higher_is_better=higher)
    print(f"{label:<22} LoRA {spread(a)}   full {spread(b)}   -> {verdicts[key]}")
""")
md(r"""
The same runs, every seed a point, on axes that start at zero: held-out accuracy on the left, and on the right
the share of held-out people's birth cities that the completion probe no longer finds (lower is less
forgetting; the perplexity change is in the table below).
""")
code(r"""
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for i, name in enumerate(main):
    left.scatter([i] * len(SEEDS), values(name, "held_out_acc"), color=f"C{i}", s=50)
    right.scatter([i] * len(SEEDS), values(name, "probe_drop"), color=f"C{i}", s=50)
for ax, label, title in ((left, "held-out exact match", "learned, every seed"),
                         (right, "completion-probe drop", "forgotten, every seed")):
    ax.set_xticks(range(len(main)), list(main)); ax.set_xlim(-0.5, len(main) - 0.5); ax.set_ylim(0, 1.05)
    ax.set_ylabel(label); ax.set_title(title)
plt.tight_layout(); plt.show()
""")
md(r"""
## What each costs, side by side

Parameters, memory and time come from the runs themselves (time is the mean over seeds); accuracy and
forgetting are the means over seeds from above. LoRA removes almost all gradient and optimizer memory, but not
the activations, which every method keeps for the backward pass through the frozen layers too. In a tiny model
with short sequences the activations dominate; in a model with billions of parameters the weights, gradients
and AdamW state are tens of gigabytes and LoRA's saving is what makes it fit on one GPU (exercise 3).
""")
code(r"""
table = {}
for name in main:
    first = by_seed[name][SEED]
    table[name] = {"lr": first["lr"], "trainable": first["trainable"], "pct": 100 * first["trainable"] / n_base,
                   "optimizer_kb": first["optimizer_bytes"] / 1e3, "memory_mb": first["memory_bytes"] / 1e6,
                   "activation_mb": first["activation_bytes"] / 1e6,
                   "train_s": sum(values(name, "train_s")) / len(SEEDS),
                   **{key: spread(values(name, key)).mean for _, key, _ in rows_to_show}}
print_table(table, [
    ("learning rate", "lr", "g"), ("trainable parameters", "trainable", ",d"),
    ("  % of the model", "pct", ".2f"), ("AdamW state (kB)", "optimizer_kb", ",.0f"),
    ("step memory, counted (MB)", "memory_mb", ".1f"), ("  of which activations (MB)", "activation_mb", ".1f"),
    ("training time per run (s)", "train_s", ".1f"),
    ("held-out accuracy (mean)", "held_out_acc", ".3f"),
    ("perplexity change (mean)", "ppl_change", "+.3f"), ("completion probe drop (mean)", "probe_drop", "+.3f"),
], cell_width=12)
if device.type == "cuda":
    print_table({n: by_seed[n][SEED] for n in main}, [("CUDA peak allocated (MB)", "cuda_peak_bytes", ",.0f")])
full_t, lora_t = table["full"], table["LoRA"]
print(f"LoRA trains {lora_t['trainable'] / full_t['trainable']:.1%} of full fine-tuning's parameters and keeps "
      f"{lora_t['optimizer_kb'] / full_t['optimizer_kb']:.1%} of its optimizer state; its counted step memory is "
      f"{lora_t['memory_mb'] / full_t['memory_mb']:.0%} of full fine-tuning's; a LoRA run took "
      f"{lora_t['train_s'] / full_t['train_s']:.2f}x the time of a full one here.")
""")
md(r"""
Why is a LoRA step not faster on this model? The forward and backward passes through the frozen weights still
run; LoRA adds two small matrix products per layer (and here the trainable token rows, wrapped around the tied
embedding and output layer) and saves only the weight-gradient products and the optimizer update of the frozen
weights. On a model this small that saving is small next to the extra work; on large models on a GPU the saving
in memory (bigger batches, no offloading) matters more than the per-step time.

**Forgetting.** A common claim is that *"LoRA mitigates catastrophic forgetting."* The evidence behind it
(Biderman et al., 2024, *LoRA Learns Less and Forgets Less*, arXiv 2405.09673) is that LoRA forgets less *and
learns less* than full fine-tuning. The verdict lines above say what these runs show for each measure; read
them with the accuracy verdict beside them, since forgetting grows with how far the weights move, which
depends on the learning rate and the steps as much as on the method.
""")
md(r"""
## The untrained-token trap

Everything above trained LoRA *with* the rows of the tokens pre-training never saw. Plain LoRA does not: it
freezes the embedding, so `<|im_start|>` and `<|im_end|>` keep their initial rows, and with *tied* input and
output embeddings (this model, and many small hub models) the frozen row is also the output row that scores
`<|im_end|>`. One plain-LoRA run of one epoch at LoRA's rate (the first seed: this shows a mechanism, it is no
comparison), beside the first seed's LoRA run with the new rows. Greedy decoding stops whenever `<|im_end|>` is
the most likely token, even at a low probability; sampling at temperature 1 picks it only with its probability,
so the trap shows as answers that run on.
""")
code(r"""
plain_model, _ = run("lora", LORA_LR, n_steps=epoch, tokens="none")
trap = {"LoRA plain": evaluate(plain_model, sampled=True), "LoRA +new rows": evaluate(models["LoRA", SEED], sampled=True)}
print_table(trap, [("held-out accuracy", "held_out_acc", ".3f"), ("stop rate, greedy", "stop_greedy", ".3f"),
                   ("stop rate, sampled T=1", "stop_sampled", ".3f"), ("<|im_end|> loss (nats)", "im_end_loss", ".3f"),
                   ("<|im_end|> probability", "im_end_probability", ".3f")], cell_width=16)
messages = trap_examples[0]
print("\nQ:", messages[0]["content"], "  loss of each answer token:")
for name, model in (("LoRA plain", plain_model), ("LoRA +new rows", models["LoRA", SEED])):
    print(f"{name:>15}: " + "  ".join(f"{t!r} {loss:.2f}" for t, loss in per_token_answer_loss(model, tok, messages)))
""")
md(r"""
The fix is one argument: `LoraConfig(trainable_token_indices=[...])` (`add_lora(train_tokens=...)`). PEFT keeps a
small trainable copy of those rows and, when the embeddings are tied, wraps the output layer with an adapter
that shares them, so the input and the output side of a token move together (`tests/test_lora.py` checks it).
The alternative, `modules_to_save=["embed_tokens"]`, trains and saves the whole embedding matrix. Real base
models have the same trap when chat tokens were added for fine-tuning and never trained.
""")
md(r"""
## Saving and merging

`save_pretrained` on a LoRA model writes only the adapter (and `adapter_config.json`, which names the base
model); `sft_course.load_model(folder)` puts it back on its base. `merge_and_unload` folds $\frac{\alpha}{r}BA$
into each $W$ (as `LoRALinear.merged_weight` does) and the trained token rows into the embedding: the result is
a plain model with no adapter overhead, and it must compute the same logits.
""")
code(r"""
lora_model = models["LoRA", SEED]
batch = pad_batch(examples[:16], tok.pad_token_id)
inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
with torch.no_grad():
    adapter_logits = lora_model(**inputs).logits
    merged = merge(copy.deepcopy(lora_model))
    merged_logits = merged(**inputs).logits
with tempfile.TemporaryDirectory() as folder:
    lora_model.save_pretrained(Path(folder) / "adapter")
    tok.save_pretrained(Path(folder) / "adapter")
    base.save_pretrained(Path(folder) / "full")
    adapter_kb = adapter_size_bytes(Path(folder) / "adapter") / 1e3
    full_kb = weights_size_bytes(Path(folder) / "full") / 1e3
    reloaded, _ = load_model(Path(folder) / "adapter", device=device)
    with torch.no_grad():
        reloaded_logits = reloaded(**inputs).logits
merge_diff = (merged_logits - adapter_logits).abs().max().item()
logit_scale = adapter_logits.abs().max().item()
print(f"adapter file {adapter_kb:,.0f} kB vs the full model's weights {full_kb:,.0f} kB "
      f"({adapter_kb / full_kb:.1%}); merged model: {type(merged).__name__}")
print(f"max |logit difference| {merge_diff:.1e} for logits up to {logit_scale:.1f} in size: float32 rounding "
      "(the folded weights are summed in a different order)")
""")
code(r"""
# NBVAL_CHECK_OUTPUT
print("merged logits equal the adapter's up to float32 rounding (max difference < 1e-5 x largest logit):",
      merge_diff < 1e-5 * logit_scale)
print("reloaded adapter gives identical logits:", torch.equal(reloaded_logits, adapter_logits))
""")
md(r"""
## What was measured

Every figure above came from this run; the summary is computed from it:
""")
code(r"""
acc_l, acc_f = spread(values("LoRA", "held_out_acc")), spread(values("full", "held_out_acc"))
print(f"- budget: {steps} steps of {BATCH_SIZE} ({EPOCHS} epochs of {len(examples)} examples), {len(SEEDS)} seeds; "
      f"full fine-tuning at {FULL_LR:g}, LoRA at {LORA_LR:g}.")
print(f"- held-out accuracy: LoRA {acc_l}, full {acc_f}: {verdicts['held_out_acc']}.")
print(f"- forgetting: perplexity change {verdicts['ppl_change']}; completion-probe drop {verdicts['probe_drop']}.")
print(f"- cost: LoRA trains {lora_t['trainable'] / full_t['trainable']:.1%} of the parameters, "
      f"{lora_t['optimizer_kb'] / full_t['optimizer_kb']:.1%} of the AdamW state, "
      f"{lora_t['memory_mb'] / full_t['memory_mb']:.0%} of the counted step memory.")
print(f"- plain LoRA (one seed, one epoch): greedy stop rate {trap['LoRA plain']['stop_greedy']:.3f}, sampled "
      f"{trap['LoRA plain']['stop_sampled']:.3f}; with the new rows {trap['LoRA +new rows']['stop_sampled']:.3f} sampled.")
print(f"- merge_and_unload changed the logits by at most {merge_diff:.1e}.")
print(f"notebook run time so far: {time.perf_counter() - started:.0f} s on {device}")
""")
md(r"""
## Exercises

1. **Count it by hand.** This model has hidden size 128, 4 layers and an MLP width you can read from
   `base.config`. Write the number of LoRA parameters at rank `RANK` on all seven linear layers of every block,
   add the new-token rows, and check the sum against `trainable_parameters` of the main LoRA run.
2. **The trap, by temperature.** Greedy decoding stopped plain LoRA's answers but sampling at temperature 1 did
   not. Compute the probability of `<|im_end|>` at the end of the answer at temperatures 1, 0.5, 0.25 and 0.1
   and explain.
3. **At scale, by formula.** A Llama-style 7B model has d = 4096, 32 layers, MLP width 11008, vocabulary 32000
   (untied). Compute the fp32 AdamW state of full fine-tuning and of LoRA r = 16 on all linear layers, in GB.

The solutions are in the next cell (collapsed; it runs with the notebook).
""")
cells.append(new_code_cell(r"""
# Solutions
# 1. Each adapted linear layer (in, out) adds r * (in + out); the new rows add one row of the tied embedding each.
cfg = base.config
d, mlp, r = cfg.hidden_size, cfg.intermediate_size, RANK
kv = cfg.num_key_value_heads * (d // cfg.num_attention_heads)
block = [(d, d), (d, kv), (d, kv), (d, d), (d, mlp), (d, mlp), (mlp, d)]   # q, k, v, o, gate, up, down: (in, out)
by_hand = cfg.num_hidden_layers * sum(r * (i + o) for i, o in block) + len(new_ids) * d
print(f"1. by hand {by_hand:,}; trainable_parameters {by_seed['LoRA'][SEED]['trainable']:,}")

# 2. Dividing the logits by T < 1 sharpens the distribution, but <|im_end|> is only the top token of a flat
#    distribution over many tokens: its probability grows slowly until T is close to 0 (greedy).
from sft_course.masking import tokenize_example
from sft_course.tokenizer import IM_END

im_end_id = tok.convert_tokens_to_ids(IM_END)
end_logits = []
with torch.no_grad():
    for messages in trap_examples:
        ids = tokenize_example(tok, messages)["input_ids"]
        at = ids.index(im_end_id, len(ids) - 3) - 1                 # the position that predicts the final <|im_end|>
        end_logits.append(plain_model(input_ids=torch.tensor([ids], device=device)).logits[0, at])
end_logits = torch.stack(end_logits)
for t in (1.0, 0.5, 0.25, 0.1):
    p = torch.softmax(end_logits / t, dim=-1)[:, im_end_id].mean().item()
    print(f"2. plain LoRA, T={t}: mean p(<|im_end|>) at the end of the answer {p:.3f}")

# 3. Parameters by formula; AdamW keeps two fp32 numbers (8 bytes) per trainable parameter.
d, layers, mlp, vocab, r = 4096, 32, 11008, 32000, 16
linears = [(d, d)] * 4 + [(d, mlp), (d, mlp), (mlp, d)]          # q, k, v, o, gate, up, down: (in, out)
full_params = layers * (sum(i * o for i, o in linears) + 2 * d) + 2 * vocab * d + d
lora_params = layers * sum(r * (i + o) for i, o in linears)
print(f"3. full: {full_params / 1e9:.2f}B params -> AdamW state {8 * full_params / 1e9:.1f} GB; "
      f"LoRA r={r}: {lora_params / 1e6:.1f}M params -> {8 * lora_params / 1e9:.2f} GB")
print(f"notebook run time: {time.perf_counter() - started:.0f} s on {device}")
""".strip("\n"), metadata={"jupyter": {"source_hidden": True}}))

nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                          "language_info": {"name": "python"}})
nbformat.write(nb, "notebooks/04_lora_vs_full.ipynb")
print(len(cells), "cells")
