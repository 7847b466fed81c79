"""Where a training step of the bundled model spends its time (batch 16 and 32): forward, backward, clipping, the
optimizer, and the torch profiler's top operators. Usage: python benchmarks/scripts/step_profile.py"""
import copy, time
import torch
from sft_course import load_model
from sft_course.defaults import MAX_LENGTH
from sft_course.experiment import training_rows
from sft_course.masking import tokenize_examples
from sft_course.collate import pad_batch
from sft_course.loss import loss_function, count_target_tokens
from sft_course.run import TrainConfig
from sft_course.training import make_optimizer

base, tok = load_model(None)
examples, _ = tokenize_examples(tok, training_rows("sentence")[:2000], max_length=MAX_LENGTH)
print("attn", base.config._attn_implementation, "threads", torch.get_num_threads())
for bs in (16, 32):
    model = copy.deepcopy(base); model.train()
    cfg = TrainConfig(lr=6e-4, batch_size=bs)
    opt = make_optimizer([p for p in model.parameters()], cfg)
    loss_fn = loss_function(model, cfg)
    batches = [pad_batch(examples[i:i+bs], tok.pad_token_id) for i in range(0, 40*bs, bs)]
    parts = {"fwd": 0., "bwd": 0., "clip": 0., "opt": 0.}
    for j, b in enumerate(batches):
        t0 = time.perf_counter(); loss = loss_fn(b) / count_target_tokens(b["labels"]); t1 = time.perf_counter()
        loss.backward(); t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); t3 = time.perf_counter()
        opt.step(); opt.zero_grad(set_to_none=True); t4 = time.perf_counter()
        if j >= 5:
            for k, d in zip(parts, (t1-t0, t2-t1, t3-t2, t4-t3)): parts[k] += d
    print(bs, {k: f"{1000*v/35:.1f} ms" for k, v in parts.items()}, "tokens/row", batches[0]["input_ids"].shape)
    if bs == 16:
        with torch.profiler.profile() as prof:
            for b in batches[:10]:
                loss = loss_fn(b) / count_target_tokens(b["labels"]); loss.backward(); opt.step(); opt.zero_grad()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
