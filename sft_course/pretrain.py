"""Pre-train the bundled base model from scratch on the world's biographies (causal LM, packed blocks)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, LlamaForCausalLM

from sft_course.accounting import total_parameters
from sft_course.defaults import PRETRAIN_LR, PRETRAIN_STEPS, PRETRAIN_WARMUP_STEPS
from sft_course.evaluation import qa_report
from sft_course.modeling import base_model_config
from sft_course.probes import completion_probe, teacher_forced_probe
from sft_course.tokenizer import train_tokenizer
from sft_course.training import cosine_lr
from sft_course.world import make_world


def packed_blocks(docs: list[list[int]], eos_id: int, block_size: int, rng: random.Random) -> torch.Tensor:
    """Shuffle the documents, join them with EOS into one stream, and cut it into `block_size` rows.

    Blocks cross document boundaries, as in GPT-style pre-training; the tail shorter than a block is
    carried into the next epoch's shuffle rather than padded.
    """
    order = list(range(len(docs)))
    rng.shuffle(order)
    stream = [t for i in order for t in docs[i] + [eos_id]]
    n_blocks = len(stream) // block_size
    return torch.tensor(stream[: n_blocks * block_size]).view(n_blocks, block_size)


def pretrain(
    out: str | Path,
    steps: int = PRETRAIN_STEPS,
    batch_size: int = 32,
    block_size: int = 128,
    lr: float = PRETRAIN_LR,
    warmup_steps: int = PRETRAIN_WARMUP_STEPS,
    n_people: int = 1000,
    bios_per_person: int = 5,
    seed: int = 0,
    log_every: int = 200,
    command: str = "",
    init_from: str | Path | None = None,
) -> dict:
    """Train tokenizer and model, save both as a Hugging Face folder with a model card; return the summary.

    `init_from` continues pre-training a saved model (same world and tokenizer) for another schedule: a
    second stage, recorded in the model card next to the first.
    """
    out = Path(out)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    world = make_world(n_people=n_people, bios_per_person=bios_per_person, seed=0)  # the world is fixed
    stages = []
    if init_from is None:
        tokenizer = train_tokenizer(world.biographies)
        model = LlamaForCausalLM(base_model_config(tokenizer))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(init_from))
        model = LlamaForCausalLM.from_pretrained(str(init_from))
        stages_file = Path(init_from) / "pretraining_stages.json"
        stages = json.loads(stages_file.read_text()) if stages_file.exists() else []
    n_params = total_parameters(model)
    docs = [tokenizer(b, add_special_tokens=False).input_ids for b in world.biographies]
    tokens_per_epoch = sum(len(d) + 1 for d in docs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    monitor_people = list(world.people[:100])
    log, blocks, cursor, tokens_seen = [], None, 0, 0
    start = time.time()
    model.train()
    for step in tqdm(range(steps), desc="pre-training"):
        if blocks is None or cursor + batch_size > len(blocks):
            blocks, cursor = packed_blocks(docs, tokenizer.eos_token_id, block_size, rng), 0
        batch = blocks[cursor : cursor + batch_size]
        cursor += batch_size
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup_steps)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens_seen += batch.numel()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            model.eval()
            probe = teacher_forced_probe(model, tokenizer, monitor_people)
            model.train()
            entry = {
                "step": step + 1,
                "loss": round(loss.item(), 4),
                "probe_100_people": round(probe, 4),
                "seconds": round(time.time() - start, 1),
            }
            log.append(entry)
            tqdm.write(json.dumps(entry))
    wall = time.time() - start
    model.eval()
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    probe = completion_probe(model, tokenizer, list(world.people))
    qa = qa_report(model, tokenizer, world.split("held_out"))
    stages.append(
        {
            "command": command,
            "steps": steps,
            "lr": lr,
            "warmup_steps": warmup_steps,
            "seed": seed,
            "tokens_seen": tokens_seen,
            "wall_seconds": round(wall, 1),
            "final_loss": round(log[-1]["loss"], 4),
        }
    )
    summary = {
        "parameters": n_params,
        "tokens_seen": sum(s["tokens_seen"] for s in stages),
        "epochs": round(sum(s["tokens_seen"] for s in stages) / tokens_per_epoch, 2),
        "wall_seconds": round(sum(s["wall_seconds"] for s in stages), 1),
        "final_loss": round(log[-1]["loss"], 4),
        "completion_probe_accuracy": round(probe["accuracy"], 4),
        "completion_probe_per_attribute": {k: round(v, 4) for k, v in probe["per_attribute"].items()},
        "held_out_accuracy": round(qa["accuracy"], 4),
        "seed": seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    (out / "pretraining_stages.json").write_text(json.dumps(stages, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(_model_card(summary, model, world, stages, batch_size, block_size))
    return summary


def _model_card(s: dict, model, world, stages: list[dict], batch_size: int, block_size: int) -> str:
    c = model.config
    per_attr = "\n".join(f"| {k} | {v:.3f} |" for k, v in s["completion_probe_per_attribute"].items())
    stage_rows = "\n".join(
        f"| {i + 1} | {st['steps']} | {st['lr']} | {st['warmup_steps']} | {st['tokens_seen']:,} | {st['wall_seconds']} | "
        f"{st['final_loss']} |"
        for i, st in enumerate(stages)
    )
    commands = "\n".join(st["command"] for st in stages)
    return f"""# sft-course base model

A small Llama (`LlamaForCausalLM`) pre-trained from scratch on the synthetic biographies of `sft_course.world`,
so that the course can fine-tune a real pre-trained base model offline. It *knows* facts about 1000 people but
was never taught to answer questions: that is what the course's SFT notebooks teach it.

## Architecture
hidden size {c.hidden_size}, {c.num_hidden_layers} layers, {c.num_attention_heads} heads, MLP {c.intermediate_size},
vocabulary {c.vocab_size} (byte-level BPE with ChatML special tokens), tied embeddings: **{s["parameters"]:,} parameters**.

## Training
- data: {len(world.people)} people x {len(world.biographies) // len(world.people)} shuffled, paraphrased biographies (seed {s["seed"]})
- batches of {batch_size} x {block_size} tokens (packed), AdamW (betas 0.9/0.95, weight decay 0.1), linear warmup then
  cosine decay to 10% of the peak, gradient clipping at 1.0; one row per stage (a later stage continues the earlier one):

| stage | steps | peak lr | warmup | tokens | wall seconds | final loss |
|---|---|---|---|---|---|---|
{stage_rows}

- in all: {s["tokens_seen"]:,} tokens ({s["epochs"]} epochs), {s["wall_seconds"]} s of training on a 2-core CPU (shared
  with other jobs at times, so wall times are upper bounds)

## Probes (computed by the command below, at the end of training)
- completion probe, greedy, every person and attribute ("NAME was born in" -> city): **{s["completion_probe_accuracy"]:.3f}**
- chat QA on held-out people, exact match ("Where was NAME born?" asked in ChatML): **{s["held_out_accuracy"]:.3f}**

| attribute | completion probe |
|---|---|
{per_attr}

The model knows the facts but does not answer questions: the gap between these two numbers is what SFT closes.

## Reproduce
```
{commands}
```
"""
