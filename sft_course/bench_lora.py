"""`sft-course bench --model smollm2 --method lora`: the course's LoRA loop against TRL's `SFTTrainer` with PEFT.

Both sides train the same LoRA adapters (the same `LoraConfig`: rank, alpha, every linear layer of the blocks, no
trainable token rows; the same initial A matrices, drawn by `lora.add_lora` from the seed) on the same tokens: TRL
gets the course's tokenized rows with their labels, in the order the course's loop takes them
(`trl_rows_in_step_order`, read sequentially), so every step of both sides holds the same examples and the same
target tokens; the same optimizer steps of the same effective batch, peak rate, 5% warm-up and cosine decay to 10%,
fused AdamW. Both normalise a step's summed loss by its target tokens. Each configuration trains a fresh copy of the
base model; each is warmed up first (one step), then the timed runs alternate between the configurations.

Measured per run: target tokens per second, wall time of the steps, peak memory (the growth of the resident set on
a CPU, the allocator's peak on CUDA: `bench.PeakMemory`), the eval loss afterwards (the course's `evaluate_loss`
on held-out rows, the same function for both sides), and achieved FLOP/s (`flops.lora_training_flops`, the work
each run actually did) as a share of the matmul peak measured at the model's shapes in the run's own precision.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace

import torch

from sft_course.bench import PeakMemory, trl_step_clock, trl_trainer
from sft_course.collate import pad_batch
from sft_course.defaults import LORA_ALPHA, LORA_RANK, MAX_LENGTH
from sft_course.experiment import eval_loss_rows, training_rows
from sft_course.flops import lora_training_flops, matmul_peak, model_shapes
from sft_course.lean_loss import shared_prefix_length
from sft_course.lora import add_lora
from sft_course.loss import cpu_has_bf16, evaluate_loss
from sft_course.masking import IGNORE_INDEX, tokenize_examples
from sft_course.modeling import load_model
from sft_course.run import TrainConfig
from sft_course.training import cosine_lr, plan_steps, step_indices, train

# Each side's configurations: micro-batch (examples per forward pass; the effective batch is the same for all) and
# its own speed options. The defaults (`DEFAULT_COURSE`, `DEFAULT_TRL`) are each side's fastest at equal eval loss.
COURSE_LORA_CONFIGS = {
    "course": {"micro_batch": 8},  # the loop as `sft --model smollm2` ran before: target-only output layer
    "course-lean": {"micro_batch": None, "lean": True},  # + shared prefix once, chunked CE, the step in one pass
    "course-lean-mb8": {"micro_batch": 8, "lean": True},
    "course-lean-bf16": {"micro_batch": None, "lean": True, "bf16": True},
}
TRL_LORA_CONFIGS = {
    "trl": {"micro_batch": None},  # SFTTrainer + PEFT, fp32, no gradient checkpointing, the step in one pass
    "trl-mb8": {"micro_batch": 8},
    "trl-checkpointing": {"micro_batch": None, "activation_checkpointing": True},  # SFTConfig's own default
    "trl-padding-free": {"micro_batch": None, "padding_free": True},
    "trl-bf16": {"micro_batch": None, "bf16": True},
}
DEFAULT_COURSE = ("course", "course-lean")
DEFAULT_TRL = ("trl",)
EVAL_LOSS_MARGIN = 0.02  # a TRL configuration's eval loss counts as equal within 2% of the course's


def default_configs(device: torch.device) -> tuple[dict, dict]:
    """The configurations a plain `bench --method lora` runs: bf16 ones only where the device has bf16 matmuls."""
    bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
    course = {n: COURSE_LORA_CONFIGS[n] for n in (*DEFAULT_COURSE, *(("course-lean-bf16",) if bf16 else ()))}
    trl = {n: TRL_LORA_CONFIGS[n] for n in (*DEFAULT_TRL, *(("trl-bf16",) if bf16 else ()))}
    return course, trl


def config_settings(course_configs: dict, trl_configs: dict, batch_size: int) -> dict:
    """Each configuration's whole setting, defaults included, as the bench's JSON line states it."""
    settings = {}
    for name, options in course_configs.items():
        settings[name] = {
            "side": "course",
            "micro_batch": _micro_size(options, batch_size),
            "lean": bool(options.get("lean", False)),
            "bf16": bool(options.get("bf16", False)),
            "compile": bool(options.get("compile", False)),
            "gradient_checkpointing": False,  # the course's loop has none
        }
    for name, options in trl_configs.items():
        settings[name] = {
            "side": "trl",
            "micro_batch": _micro_size(options, batch_size),
            "padding_free": bool(options.get("padding_free", False)),
            "bf16": bool(options.get("bf16", False)),
            "torch_compile": bool(options.get("torch_compile", False)),
            "gradient_checkpointing": bool(options.get("activation_checkpointing", False)),
        }
    return settings


@dataclass
class LoraRun:
    name: str
    side: str  # "course" or "trl"
    precision: str  # "fp32" or "bf16"
    seconds: float = 0.0
    target_tokens: int = 0
    computed_tokens: int = 0
    flops: float = 0.0
    peak_memory_mb: float = 0.0
    eval_loss: float = float("nan")
    final_train_loss: float = float("nan")
    warmup_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.target_tokens / self.seconds if self.seconds else 0.0


def _micro_size(options: dict, batch_size: int) -> int:
    micro = options.get("micro_batch") or batch_size
    if batch_size % micro:
        raise ValueError(f"micro-batch {micro} does not divide the batch of {batch_size}")
    return micro


def _course_micro_batches(examples, config: TrainConfig, micro: int, lean: bool) -> list[tuple[int, int, int, int]]:
    """(rows, width, target rows, 0) of each micro-batch `train` runs: with the lean loss one packed row."""
    out = []
    for _, indices in step_indices(len(examples), config, plan_steps(len(examples), config)):
        for j in range(0, len(indices), micro):
            batch = pad_batch([examples[i] for i in indices[j : j + micro]], 0)
            targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            rows, width = batch["input_ids"].shape
            if lean:  # the prefix once, then every row's own tokens packed into one row (`lean_loss`)
                prefix = shared_prefix_length(batch)
                rows, width = 1, prefix + int(batch["attention_mask"].sum()) - rows * prefix
            out.append((rows, width, targets, 0))
    return out


def _course_runner(name, options, lora_model, tokenizer, examples, eval_examples, config, rank):
    micro = _micro_size(options, config.batch_size)
    config = replace(
        config,
        grad_accum_steps=config.batch_size // micro,
        **{k: v for k, v in options.items() if k != "micro_batch"},
    )
    began = time.perf_counter()
    train(copy.deepcopy(lora_model), examples, tokenizer.pad_token_id, replace(config, max_steps=1), progress=False)
    warmup = time.perf_counter() - began

    def measured() -> LoraRun:
        model = copy.deepcopy(lora_model)
        with PeakMemory(next(model.parameters()).device) as memory:
            result = train(model, examples, tokenizer.pad_token_id, config, progress=False)
        run = LoraRun(
            name,
            "course",
            "bf16" if config.bf16 else "fp32",
            seconds=result.train_seconds,
            target_tokens=result.target_tokens,
            computed_tokens=result.computed_tokens,
            peak_memory_mb=memory.peak_mb,
            final_train_loss=result.final_train_loss,
            warmup_seconds=warmup,
        )
        micro_batches = _course_micro_batches(examples, config, micro, config.lean)
        run.flops = lora_training_flops(model, micro_batches, rank)
        run.eval_loss = evaluate_loss(model, eval_examples, tokenizer.pad_token_id, batch_size=micro)
        return run

    return measured


def trl_rows_in_step_order(examples: list[dict], config: TrainConfig) -> list[dict]:
    """The course's tokenized examples ({"input_ids", "labels"}) in the order the course's loop takes them, one row
    per example of each step (`training.step_indices`): read sequentially by TRL, each TRL step gets the very
    batch of the course's step, with the very same tokens and target tokens."""
    plan = plan_steps(len(examples), config)
    return [
        {"input_ids": list(examples[i]["input_ids"]), "labels": list(examples[i]["labels"])}
        for _, indices in step_indices(len(examples), config, plan)
        for i in indices
    ]


def use_course_schedule(trainer, config: TrainConfig) -> None:
    """Make `trainer` (a transformers `Trainer`) take every step at the course's rate (`training.cosine_lr`: the
    warm-up starts at peak / warm-up steps, the cosine spans the steps after it), not at its own cosine's (which
    starts at rate 0 and spans every step from the first): the two schedules differ at every step."""
    warmup = max(1, round(config.warmup_ratio * config.total_steps))

    def create_scheduler(num_training_steps: int, optimizer=None):
        factor = lambda step: cosine_lr(step, config.total_steps, 1.0, warmup, config.min_lr_ratio)  # noqa: E731
        trainer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or trainer.optimizer, factor)
        return trainer.lr_scheduler

    trainer.create_scheduler = create_scheduler


def _trl_runner(name, options, lora_model, tokenizer, examples, eval_examples, config, rank):
    from datasets import Dataset

    micro = _micro_size(options, config.batch_size)
    # the same tokens, targets and batches as the course (TRL takes a tokenized dataset with a "labels" column as
    # it is), read in order: the two sides train the same thing, so their eval losses differ only by rounding
    dataset = Dataset.from_list(trl_rows_in_step_order(examples, config))
    device = next(lora_model.parameters()).device
    # the rate of each step: the course's schedule (`use_course_schedule`)
    settings = {
        "train_sampling_strategy": "sequential",
        "assistant_only_loss": False,  # the labels come with the rows
        **options,
    }
    if settings.get("padding_free"):
        settings["max_length"] = None  # TRL: padding-free without packing does not enforce max_length

    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        warm = trl_trainer(copy.deepcopy(lora_model), tokenizer, dataset, config, 1, folder, settings)[0]
        use_course_schedule(warm, config)
        warm.train()
        warmup = time.perf_counter() - began

    def measured() -> LoraRun:
        model = copy.deepcopy(lora_model)
        with tempfile.TemporaryDirectory() as folder:
            trainer, batches = trl_trainer(model, tokenizer, dataset, config, config.total_steps, folder, settings)
            use_course_schedule(trainer, config)
            clock = trl_step_clock()
            trainer.add_callback(clock)
            with PeakMemory(device) as memory:
                output = trainer.train()
        batches = batches[: config.total_steps * (config.batch_size // micro)]  # the loader may prefetch one more
        run = LoraRun(
            name,
            "trl",
            "bf16" if settings.get("bf16") else "fp32",
            seconds=clock.ends[-1] - clock.begin,
            target_tokens=sum(b[3] for b in batches),
            computed_tokens=sum(b[0] * b[1] for b in batches),
            peak_memory_mb=memory.peak_mb,
            final_train_loss=output.training_loss,
            warmup_seconds=warmup,
        )
        # on a CPU TRL's fused LM head scores every position (it keeps only the targets on Triton devices)
        every = device.type == "cpu"
        run.flops = lora_training_flops(model, [(r, w, r * w if every else t, 0) for r, w, _, t in batches], rank)
        run.eval_loss = evaluate_loss(model, eval_examples, tokenizer.pad_token_id, batch_size=micro)
        return run

    return measured


def run_lora_bench(
    model_name: str = "smollm2",
    steps: int = 12,
    batch_size: int = 8,
    lr: float = 2e-4,
    repeats: int = 1,
    seed: int = 0,
    rows: list[dict] | None = None,
    eval_rows: list[dict] | None = None,
    course_configs: dict | None = None,
    trl_configs: dict | None = None,
    rank: int = LORA_RANK,
    alpha: float = LORA_ALPHA,
    progress=print,
) -> dict:
    """Run every configuration `repeats` times, alternating; return {"runs": [...], "summary": {...}}.

    `rows` default to the world's QA (sentence answers) about the first training people, as many as the run needs
    (`steps * batch_size`); `eval_rows` to the held-out people's questions (`experiment.eval_loss_rows`).
    """
    base, tokenizer = load_model(model_name)
    device = next(base.parameters()).device
    default_course, default_trl = default_configs(device)
    course_configs = default_course if course_configs is None else course_configs
    trl_configs = default_trl if trl_configs is None else trl_configs
    needed = steps * batch_size
    rows = (rows if rows is not None else training_rows("sentence"))[:needed]
    if len(rows) < needed:
        raise ValueError(f"{steps} steps of batch {batch_size} need {needed} rows, and there are {len(rows)}")
    examples, _ = tokenize_examples(tokenizer, rows, MAX_LENGTH)
    eval_examples, _ = tokenize_examples(tokenizer, eval_rows or eval_loss_rows("sentence", n_people=8), MAX_LENGTH)
    lora_model = add_lora(base, tokenizer, rank=rank, alpha=alpha, train_chat_tokens=False, seed=seed)
    config = TrainConfig(lr=lr, total_steps=steps, batch_size=batch_size, seed=seed, eval_every=0)
    progress(
        f"bench --method lora: {len(examples)} examples, {steps} steps of batch {batch_size}, lr {lr}, "
        f"rank {rank}, alpha {alpha}, {len(eval_examples)} eval examples, on {device}"
    )
    runners = {}
    for name, options in course_configs.items():
        progress(f"warm-up: {name}")
        runners[name] = _course_runner(name, options, lora_model, tokenizer, examples, eval_examples, config, rank)
    for name, options in trl_configs.items():
        progress(f"warm-up: {name}")
        runners[name] = _trl_runner(name, options, lora_model, tokenizer, examples, eval_examples, config, rank)
    names = _alternating(list(course_configs), list(trl_configs))
    shapes = model_shapes(base, rows=512)
    runs, fp32_peak, fp32_probes = timed_rounds(
        runners, names, repeats, lambda: matmul_peak(device, torch.float32, shapes), progress
    )
    peaks = {"fp32": fp32_peak}
    peaks["bf16"] = matmul_peak(device, torch.bfloat16, shapes, repeats=5 if "bf16" in _precisions(runs) else 2)
    setup = {
        "model": model_name,
        "method": "lora",
        "steps": steps,
        "batch_size": batch_size,
        "examples": len(examples),
        "eval_examples": len(eval_examples),
        "lr": lr,
        "rank": rank,
        "alpha": alpha,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_has_bf16": cpu_has_bf16(),
        "fp32_peak_probes_gflops": [round(p / 1e9, 1) for p in fp32_probes],  # one per round; the best is the peak
        "settings": config_settings(course_configs, trl_configs, batch_size),
    }
    return {"runs": [asdict(r) for r in runs], "summary": summarize_lora(runs, peaks, setup)}


def timed_rounds(runners: dict, names: list[str], repeats: int, probe_peak, progress=print):
    """Run every configuration in `names` once per round, `repeats` rounds, and probe the matmul peak after each
    round. Returns (the runs, the best probe, every probe): on a shared machine one probe can land in a slow moment,
    and a yardstick set there would put runs above 100% of it; the best of the probes is what the hardware did."""
    runs: list[LoraRun] = []
    probes = []
    for repeat in range(repeats):
        for name in names:
            run = runners[name]()
            runs.append(run)
            progress(
                f"{name} (repeat {repeat + 1}): {run.seconds:.1f} s, {run.tokens_per_second:,.1f} target tokens/s, "
                f"{run.peak_memory_mb:,.0f} MB, eval loss {run.eval_loss:.4f}"
            )
        probes.append(probe_peak())
    return runs, max(probes), probes


def _precisions(runs: list[LoraRun]) -> set[str]:
    return {r.precision for r in runs}


def _alternating(course: list[str], trl: list[str]) -> list[str]:
    order = []
    for i in range(max(len(course), len(trl))):
        order += course[i : i + 1] + trl[i : i + 1]
    return order


def summarize_lora(runs: list[LoraRun], peaks: dict[str, float], setup: dict) -> dict:
    """Medians per configuration, each run's share of the matmul peak in its own precision, and the headline:
    the fastest course configuration over the fastest TRL one whose eval loss is within 2% of it (the fastest TRL
    one if none is); its peak memory over that same TRL configuration's."""
    configs: dict[str, dict] = {}
    for name in dict.fromkeys(r.name for r in runs):
        mine = [r for r in runs if r.name == name]
        peak = peaks[mine[0].precision]
        configs[name] = {
            "side": mine[0].side,
            "precision": mine[0].precision,
            "seconds": statistics.median(r.seconds for r in mine),
            "tokens_per_second": statistics.median(r.tokens_per_second for r in mine),
            "peak_memory_mb": statistics.median(r.peak_memory_mb for r in mine),
            "eval_loss": statistics.median(r.eval_loss for r in mine),
            "final_train_loss": statistics.median(r.final_train_loss for r in mine),
            "warmup_seconds": statistics.median(r.warmup_seconds for r in mine),
            "gflops_per_second": statistics.median(r.flops / r.seconds / 1e9 for r in mine),
            "fraction_of_matmul_peak": statistics.median(r.flops / r.seconds / peak for r in mine),
            "runs": len(mine),
        }
    summary = {
        "configs": {
            n: {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()} for n, m in configs.items()
        },
        "matmul_peak_gflops": {p: round(v / 1e9, 1) for p, v in peaks.items()},
        **setup,
    }
    course = {n: m for n, m in configs.items() if m["side"] == "course"}
    trl = {n: m for n, m in configs.items() if m["side"] == "trl"}
    if course and trl:
        best = max(course, key=lambda n: course[n]["tokens_per_second"])
        mine = course[best]
        equal = {
            n: m for n, m in trl.items() if abs(m["eval_loss"] - mine["eval_loss"]) <= EVAL_LOSS_MARGIN * m["eval_loss"]
        }
        pool = equal or trl
        reference = max(pool, key=lambda n: pool[n]["tokens_per_second"])
        theirs = trl[reference]
        summary.update(
            {
                "course_config": best,
                "trl_reference": reference,
                "trl_reference_reaches_equal_eval_loss": bool(equal),
                "throughput_ratio_vs_trl": round(mine["tokens_per_second"] / theirs["tokens_per_second"], 3),
                "peak_memory_ratio_vs_trl": round(mine["peak_memory_mb"] / theirs["peak_memory_mb"], 3)
                if theirs["peak_memory_mb"]
                else None,
                "eval_loss_ratio_vs_trl": round(mine["eval_loss"] / theirs["eval_loss"], 4),
            }
        )
    return summary


def format_lora_table(summary: dict) -> str:
    """A markdown table of the medians per configuration."""
    lines = [
        "| config | precision | seconds | target tok/s | memory MB | eval loss | warm-up s | GFLOP/s "
        "| of matmul peak |",
        "|" + "---|" * 9,
    ]
    for name, m in summary["configs"].items():
        lines.append(
            f"| {name} | {m['precision']} | {m['seconds']:.1f} | {m['tokens_per_second']:,.1f} "
            f"| {m['peak_memory_mb']:,.0f} | {m['eval_loss']:.4f} | {m['warmup_seconds']:.1f} "
            f"| {m['gflops_per_second']:.1f} | {m['fraction_of_matmul_peak']:.1%} |"
        )
    return "\n".join(lines)
