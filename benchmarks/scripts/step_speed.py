"""Time the bundled model's training step: eager, lean (packed rows), torch.compile fp32 (cold cache, then a second
model of the same shape in the same process). Usage: STEPS=30 python benchmarks/scripts/step_speed.py eager:16 lean:16 compile:16 ..."""
import copy, os, sys, tempfile, time
import torch
from sft_course import load_model
from sft_course.defaults import MAX_LENGTH
from sft_course.experiment import training_rows
from sft_course.masking import tokenize_examples
from sft_course.training import train, TrainConfig

STEPS = int(os.environ.get("STEPS", 40))
base, tok = load_model(None)
examples, _ = tokenize_examples(tok, training_rows("sentence"), max_length=MAX_LENGTH)
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
print("threads", torch.get_num_threads(), "torch", torch.__version__, flush=True)
for spec in sys.argv[1:]:
    name, batch = spec.split(":"); batch = int(batch)
    kw = {"lean": name == "lean", "compile": name.startswith("compile")}
    model = copy.deepcopy(base)
    cfg = TrainConfig(lr=6e-4, total_steps=STEPS, batch_size=batch, seed=0, eval_every=0, **kw)
    t = time.perf_counter()
    r = train(model, examples, tok.pad_token_id, cfg, progress=False)
    wall = time.perf_counter() - t
    steady = (r.train_seconds - r.first_step_seconds) / (STEPS - 1)
    print(f"{spec:<12} {STEPS} steps: wall {wall:.2f} s, first step {r.first_step_seconds:.2f} s, steady "
          f"{1000*steady:.1f} ms/step, final loss {r.final_train_loss:.6f}, padding {r.padding_share:.1%}", flush=True)
