"""Held-out exact-match curves of candidate budgets on the bundled model (notebook 04's budget).

Usage: python benchmarks/scripts/budget_curve.py METHOD:LR:BATCH:STEPS:SEED:PAUSE,PAUSE ...
(METHOD full, lora, or lora-rN for rank N (alpha 2N); LoRA with the new-token rows, rank 8, alpha 16; held-out: 50 people, 5 questions each)"""
import sys, time
from sft_course import load_model
from sft_course.defaults import MAX_LENGTH
from sft_course.experiment import training_rows, finetune_curve
from sft_course.masking import tokenize_examples
from sft_course.evaluation import qa_report, sample_people
from sft_course.lora import new_token_ids
from sft_course.world import make_world

base, tok = load_model(None)
world = make_world()
rows = training_rows("sentence")
examples, _ = tokenize_examples(tok, rows, max_length=MAX_LENGTH)
seen, held = sample_people(world, 50, seed=0)
new_ids = new_token_ids(tok, rows, world.biographies)
evals = []
def acc(m):
    t = time.perf_counter(); a = qa_report(m, tok, held)["accuracy"]; evals.append(time.perf_counter() - t); return a
for spec in sys.argv[1:]:
    method, lr, batch, steps, seed, pauses = spec.split(":")
    lr, batch, steps, seed = float(lr), int(batch), int(steps), int(seed)
    pauses = [int(p) for p in pauses.split(",")] if pauses else []
    rank = int(method.split("-r")[1]) if method.startswith("lora-r") else 8
    opts = {"rank": rank, "alpha": 2 * rank, "train_chat_tokens": True, "train_tokens": new_ids} if method.startswith("lora") else None
    evals.clear(); t = time.perf_counter()
    model, result, curve = finetune_curve(base, tok, examples, steps, lr, acc, at_steps=pauses, batch_size=batch,
                                          seed=seed, lora_options=opts)
    wall = time.perf_counter() - t
    print(f"{spec}: train {result.train_seconds:.1f} s ({1000*result.train_seconds/steps:.0f} ms/step), "
          f"evals {sum(evals):.1f} s, wall {wall:.1f} s; curve " + "  ".join(f"{s}:{a:.3f}" for s, a in curve), flush=True)
