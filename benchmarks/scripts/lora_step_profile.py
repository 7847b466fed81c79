"""Time and profile the lean LoRA step on SmolLM2-135M (8 steps of batch 8 from the bench's rows). Variants as
arguments: base, denorm (flush denormals), lp (the lora_products context; now part of the lean loss itself).
Env: REPS (passes over the 8 steps), PROFILE=1 (torch profiler table), SHAPES=1 (grouped by input shape)."""
import copy, os, sys, time
import torch
from sft_course.modeling import load_model
from sft_course.lora import add_lora
from sft_course.experiment import training_rows
from sft_course.masking import tokenize_examples
from sft_course.defaults import MAX_LENGTH
from sft_course.collate import pad_batch
from sft_course.loss import loss_function, count_target_tokens
from sft_course.run import TrainConfig
from sft_course.training import make_optimizer

variants = sys.argv[1:] or ["base"]
base, tok = load_model("smollm2")
rows = training_rows("sentence")[:64]
examples, _ = tokenize_examples(tok, rows, MAX_LENGTH)
lora = add_lora(base, tok, rank=8, alpha=16, train_chat_tokens=False, seed=0)
batches = [pad_batch(examples[i:i+8], tok.pad_token_id) for i in range(0, 64, 8)]
print("threads", torch.get_num_threads(), "attn", base.config._attn_implementation, flush=True)
PROFILE = os.environ.get("PROFILE")
for v in variants:
    torch.set_flush_denormal("denorm" in v)
    model = copy.deepcopy(lora); model.train()
    cfg = TrainConfig(lr=2e-4, batch_size=8, lean=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    loss_fn = loss_function(model, cfg)
    if "lp" in v:
        from sft_course.lora_products import lora_products
        inner = loss_fn
        def loss_fn(b, inner=inner, model=model):
            with lora_products(model):
                return inner(b)
    parts = {"fwd": 0., "bwd": 0., "clip": 0., "opt": 0.}
    losses = []
    for rep in range(int(os.environ.get("REPS", 2))):
        for j, b in enumerate(batches):
            t0 = time.perf_counter(); loss = loss_fn(b) / count_target_tokens(b["labels"]); t1 = time.perf_counter()
            loss.backward(); t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 1.0); t3 = time.perf_counter()
            opt.step(); opt.zero_grad(set_to_none=True); t4 = time.perf_counter()
            losses.append(float(loss))
            if not (rep == 0 and j == 0):
                for k, d in zip(parts, (t1-t0, t2-t1, t3-t2, t4-t3)): parts[k] += d
    n = int(os.environ.get("REPS", 2)) * len(batches) - 1
    print(v, {k: f"{1000*x/n:.0f}" for k, x in parts.items()}, f"total {1000*sum(parts.values())/n:.0f} ms/step",
          "loss", f"{losses[7]:.6f} {losses[-1]:.6f}", flush=True)
    if PROFILE:
        with torch.profiler.profile(record_shapes=bool(os.environ.get("SHAPES"))) as prof:
            for b in batches[:3]:
                loss = loss_fn(b) / count_target_tokens(b["labels"]); loss.backward(); opt.step(); opt.zero_grad()
        print(prof.key_averages(group_by_input_shape=bool(os.environ.get("SHAPES"))).table(sort_by="self_cpu_time_total", row_limit=40))
