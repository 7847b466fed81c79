"""`sft-course bench`: the course's loop against TRL's `SFTTrainer`, same model, data, batch, lr, schedule, steps.

Every configuration trains a fresh copy of the same base model on the same tokenized examples for the same number
of optimizer steps, with the same effective batch, peak learning rate, warm-up and cosine decay to 10%, no
gradient checkpointing, fp32 unless a configuration says bf16 (each side's own bf16 autocast, with fp32 weights
and optimizer state); then it is scored on held-out people (exact match). Before anything is timed, every
configuration runs a few warm-up steps (imports, allocator, compilation: the compiled loop's warm-up time is its
compile time, reported on its own). The timed runs then alternate between the configurations, so a change in the
machine's load hits all of them alike.

Measured per run: target tokens per second over the whole run and in the steady state (after the first step),
the share of computed token slots that were padding, wall time, held-out accuracy, and peak memory (the process's
resident memory above what it held before the run on a CPU, `torch.cuda.max_memory_allocated` on CUDA). The loop's
achieved FLOP/s is given as a fraction of the matmul peak in the configuration's own precision (fp32 or bf16),
measured at the model's own shapes in the same run (`flops.matmul_peak`).
"""

from __future__ import annotations

import copy
import ctypes
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace

import torch

from sft_course.defaults import MAX_LENGTH
from sft_course.evaluation import qa_report, sample_people
from sft_course.experiment import training_rows
from sft_course.flops import matmul_peak, model_shapes
from sft_course.formats import to_messages
from sft_course.loss import uses_logits_on_targets
from sft_course.masking import IGNORE_INDEX, tokenize_examples
from sft_course.modeling import load_model
from sft_course.training import TrainConfig, plan_steps, step_indices, train
from sft_course.world import make_world

COURSE_CONFIGS = {
    "course": {},  # the default path: eager, fused AdamW, the output layer on target positions only
    "course-compiled": {"compile": True},
    "course-bf16": {"bf16": True},  # bf16 autocast (fp32 weights and optimizer state)
    "course-compiled-bf16": {"compile": True, "bf16": True},
}
TRL_CONFIGS = {
    "trl": {},  # SFTTrainer defaults (random batches) in fp32, without gradient checkpointing
    "trl-grouped": {"train_sampling_strategy": "group_by_length"},
    "trl-bf16": {"bf16": True},  # the Trainer's bf16 autocast, its own mixed precision
}
ACCURACY_MARGIN = 0.02  # a TRL configuration counts as "equal accuracy" within 2 points


@dataclass
class BenchRun:
    name: str
    seconds: float = 0.0  # wall time of training (the first step included)
    first_step_seconds: float = 0.0
    target_tokens: int = 0
    first_step_target_tokens: int = 0
    computed_tokens: int = 0
    padding_tokens: int = 0
    flops: float = 0.0
    held_out_accuracy: float = float("nan")
    peak_memory_mb: float = 0.0
    final_loss: float = float("nan")
    warmup_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.target_tokens / self.seconds if self.seconds else 0.0

    @property
    def steady_tokens_per_second(self) -> float:
        seconds = self.seconds - self.first_step_seconds
        return (self.target_tokens - self.first_step_target_tokens) / seconds if seconds > 0 else 0.0

    @property
    def padding_share(self) -> float:
        return self.padding_tokens / self.computed_tokens if self.computed_tokens else 0.0


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak above what was allocated before; on a CPU, the growth of
    the resident set size (sampled every 5 ms) above what the process held before, after returning freed heap
    memory to the system. Memory freed by an earlier run and reused is not growth, so on a CPU it is a lower bound."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mb = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        import gc

        import psutil

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        self._process = psutil.Process()
        self._base = self._peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._process.memory_info().rss)
            self.peak_mb = (self._peak - self._base) / 2**20
        return False


def training_flops(model, batch_widths: list[tuple[int, int, int]]) -> float:
    """FLOPs of forward plus backward (3x the forward) for padded batches given as (rows, width, head_rows).

    Matmul work only: every `nn.Linear` costs 2 * in * out per token it sees (`head_rows` tokens for the output
    layer, every slot for the others), attention 2 * 2 * width * hidden per token and layer (scores and values).
    """
    head = model.get_output_embeddings()
    body = sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head
    )
    head_size = head.in_features * head.out_features
    config = model.config
    total = 0.0
    for rows, width, head_rows in batch_widths:
        slots = rows * width
        forward = 2 * body * slots + 2 * head_size * head_rows
        forward += config.num_hidden_layers * 4 * width * config.hidden_size * slots
        total += 3 * forward
    return total


def _course_run(name, options, base_model, tokenizer, examples, config, warmup_steps):
    config = replace(config, **options)
    warm = copy.deepcopy(base_model)
    t = time.perf_counter()
    train(warm, examples, tokenizer.pad_token_id, replace(config, max_steps=warmup_steps), progress=False)
    warmup_seconds = time.perf_counter() - t
    del warm

    def measured():
        model = copy.deepcopy(base_model)
        with PeakMemory(next(model.parameters()).device) as memory:
            result = train(model, examples, tokenizer.pad_token_id, config, progress=False)
        run = BenchRun(
            name,
            seconds=result.train_seconds,
            first_step_seconds=result.first_step_seconds,
            target_tokens=result.target_tokens,
            first_step_target_tokens=result.history[0]["tokens"],
            computed_tokens=result.computed_tokens,
            padding_tokens=result.padding_tokens,
            peak_memory_mb=memory.peak_mb,
            final_loss=result.final_train_loss,
            warmup_seconds=warmup_seconds,
        )
        run.flops = training_flops(model, _course_widths(examples, config, uses_logits_on_targets(model, config)))
        return model, run

    return measured


def _course_widths(examples, config, targets_only):
    """(examples, padded width, tokens through the output layer) of each step `train` takes (`step_indices`)."""
    widths = []
    for _, indices in step_indices(len(examples), config, plan_steps(len(examples), config)):
        batch = [examples[j] for j in indices]
        width = max(len(e["input_ids"]) for e in batch)
        targets = sum(sum(label != IGNORE_INDEX for label in e["labels"][1:]) for e in batch)
        widths.append((len(batch), width, targets if targets_only else len(batch) * width))
    return widths


def trl_trainer(model, tokenizer, dataset, config: TrainConfig, max_steps: int, folder, options: dict):
    """TRL's `SFTTrainer` with the bench's settings (the rate, schedule, clipping and seed of `config`, warm-up over
    `config.total_steps`, assistant-only loss, fp32, no gradient checkpointing, no logging to stdout) overridden by
    `options` (SFTConfig fields; `micro_batch`: examples per forward pass, the rest by gradient accumulation).
    Returns `(trainer, batches)`: `batches` fills with (rows, width, real tokens, target tokens) of each batch."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    options = dict(options)
    micro = options.pop("micro_batch", None) or config.batch_size
    args = SFTConfig(
        output_dir=folder,
        max_steps=max_steps,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=config.batch_size // micro,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
        fp16=False,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        use_cpu=next(model.parameters()).device.type == "cpu",
        dataloader_num_workers=0,
        **{
            "warmup_steps": max(1, round(config.warmup_ratio * config.total_steps)),
            "assistant_only_loss": True,  # a tokenized dataset brings its own "labels": False
            "bf16": False,
            "activation_checkpointing": False,
            "max_length": MAX_LENGTH,
            **options,
        },
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # it prints the logs to stdout, whose last line is our JSON
    batches: list[tuple[int, int, int, int]] = []
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        ids = batch["input_ids"]
        real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()  # padding-free: all
        batches.append((ids.shape[0], ids.shape[1], real, int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())))
        return batch

    trainer.data_collator = counting
    return trainer, batches


def trl_step_clock():
    """A Trainer callback that notes when training begins (`begin`) and when each optimizer step ends (`ends`)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.begin, self.ends = None, []

        def on_train_begin(self, *args, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.ends.append(time.perf_counter())

    return StepClock()


def _trl_run(name, options, base_model, tokenizer, rows, config, steps, max_length, warmup_steps):
    from datasets import Dataset

    dataset = Dataset.from_list([{"messages": to_messages(r)} for r in rows])

    def trainer_for(model, max_steps, folder):
        settings = {"max_length": max_length, **options}
        return trl_trainer(model, tokenizer, dataset, replace(config, total_steps=steps), max_steps, folder, settings)

    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        warm, _ = trainer_for(copy.deepcopy(base_model), warmup_steps, folder)
        warm.train()
        warmup_seconds = time.perf_counter() - t
        del warm

    def measured():
        model = copy.deepcopy(base_model)
        with tempfile.TemporaryDirectory() as folder:
            trainer, batches = trainer_for(model, steps, folder)
            clock = trl_step_clock()
            trainer.add_callback(clock)
            with PeakMemory(next(model.parameters()).device) as memory:
                output = trainer.train()
        # the dataloader may prefetch one batch more than it trains on
        batches = batches[:steps]
        run = BenchRun(
            name,
            seconds=clock.ends[-1] - clock.begin,
            first_step_seconds=clock.ends[0] - clock.begin,
            target_tokens=sum(b[3] for b in batches),
            first_step_target_tokens=batches[0][3],
            computed_tokens=sum(b[0] * b[1] for b in batches),
            padding_tokens=sum(b[0] * b[1] - b[2] for b in batches),
            peak_memory_mb=memory.peak_mb,
            final_loss=output.training_loss,
            warmup_seconds=warmup_seconds,
        )
        run.flops = training_flops(model, [(b[0], b[1], b[0] * b[1]) for b in batches])
        model.eval()
        return model, run

    return measured


def run_bench(
    steps: int | None = None,
    n_people: int | None = None,
    eval_people: int = 100,
    batch_size: int = 64,
    lr: float = 6e-4,
    epochs: float = 2.0,
    warmup_steps: int = 3,
    repeats: int = 1,
    seed: int = 0,
    model_name: str | None = None,
    course_configs=None,
    trl_configs=None,
    max_length: int = MAX_LENGTH,
    progress=print,
) -> dict:
    """Run every configuration `repeats` times, alternating; return {"runs": [...], "summary": {...}}."""
    course_configs = COURSE_CONFIGS if course_configs is None else course_configs
    trl_configs = TRL_CONFIGS if trl_configs is None else trl_configs
    base_model, tokenizer = load_model(model_name)
    device = next(base_model.parameters()).device
    rows = training_rows("sentence", n_people=n_people)
    examples, _ = tokenize_examples(tokenizer, rows, max_length)
    config = TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, seed=seed, eval_every=0)
    steps = steps or plan_steps(len(examples), config).total_steps
    config = replace(config, total_steps=steps)
    progress(f"bench: {len(examples)} examples, {steps} steps of batch {batch_size}, lr {lr}, on {device}")

    runners = {}
    for name, options in course_configs.items():
        progress(f"warm-up: {name}")
        runners[name] = _course_run(name, options, base_model, tokenizer, examples, config, warmup_steps)
    for name, options in trl_configs.items():
        progress(f"warm-up: {name}")
        runners[name] = _trl_run(name, options, base_model, tokenizer, rows, config, steps, max_length, warmup_steps)
    held_out = sample_people(make_world(), eval_people, seed)[1]
    shapes = model_shapes(base_model, rows=2048)  # a step of 64 examples holds about 2,000 token slots
    bf16_repeats = 5 if any(o.get("bf16") for o in [*course_configs.values(), *trl_configs.values()]) else 2
    matmul = {
        "fp32": matmul_peak(device, torch.float32, shapes),
        "bf16": matmul_peak(device, torch.bfloat16, shapes, 2),
    }
    runs: list[BenchRun] = []
    order = _alternating(list(course_configs), list(trl_configs))
    for repeat in range(repeats):
        for name in order:
            model, run = runners[name]()
            run.held_out_accuracy = qa_report(model, tokenizer, held_out)["accuracy"]
            runs.append(run)
            progress(
                f"{name} (repeat {repeat + 1}): {run.seconds:.1f} s, {run.tokens_per_second:,.0f} target tokens/s, "
                f"held-out {run.held_out_accuracy:.3f}"
            )
            del model
    matmul_after = {
        "fp32": matmul_peak(device, torch.float32, shapes),
        "bf16": matmul_peak(device, torch.bfloat16, shapes, bf16_repeats),
    }
    return {
        "runs": runs,
        "summary": summarize(
            runs,
            course_configs,
            trl_configs,
            {p: max(matmul[p], matmul_after[p]) for p in matmul},
            {
                "steps": steps,
                "examples": len(examples),
                "batch_size": batch_size,
                "lr": lr,
                "eval_people": eval_people,
                "device": str(device),
                "threads": torch.get_num_threads(),
            },
        ),
    }


def _alternating(course: list[str], trl: list[str]) -> list[str]:
    order = []
    for i in range(max(len(course), len(trl))):
        order += course[i : i + 1] + trl[i : i + 1]
    return order


def _median_run(runs: list[BenchRun]) -> dict:
    keys = (
        "seconds",
        "first_step_seconds",
        "tokens_per_second",
        "steady_tokens_per_second",
        "padding_share",
        "held_out_accuracy",
        "peak_memory_mb",
        "warmup_seconds",
        "final_loss",
    )
    out = {k: statistics.median(getattr(r, k) for r in runs) for k in keys}
    out["flops_per_second"] = statistics.median(r.flops / r.seconds for r in runs)
    return out


def summarize(runs: list[BenchRun], course_configs, trl_configs, matmul_flops: float, setup: dict) -> dict:
    """Medians per configuration and the headline ratios (see the module docstring)."""
    names = [n for n in [*course_configs, *trl_configs] if any(r.name == n for r in runs)]
    by_name = {name: _median_run([r for r in runs if r.name == name]) for name in names}
    course = {n: by_name[n] for n in course_configs if n in by_name}
    trl = {n: by_name[n] for n in trl_configs if n in by_name}
    peaks = matmul_flops if isinstance(matmul_flops, dict) else {"fp32": matmul_flops, "bf16": matmul_flops}
    precision = {n: "bf16" if {**course_configs, **trl_configs}[n].get("bf16") else "fp32" for n in names}
    summary = {
        "configs": {n: {k: round(v, 4) for k, v in m.items()} for n, m in by_name.items()},
        "matmul_gflops": {p: round(v / 1e9, 1) for p, v in peaks.items()},
        **setup,
    }

    def versus(name: str, key: str) -> dict:
        """The course configuration `name` over the fastest TRL one reaching its accuracy within the margin."""
        mine = course[name]
        equal = {n: m for n, m in trl.items() if m["held_out_accuracy"] >= mine["held_out_accuracy"] - ACCURACY_MARGIN}
        pool = equal or trl
        reference = max(pool, key=lambda n: pool[n][key])
        return {
            "ratio": round(mine[key] / pool[reference][key], 3) if pool[reference][key] else None,
            "reference": reference,
            "reference_reaches_equal_accuracy": bool(equal),
        }

    if course and trl:
        per_config = {n: versus(n, "steady_tokens_per_second") for n in course}
        whole_run = {n: versus(n, "tokens_per_second") for n in course}
        best = max(per_config, key=lambda n: per_config[n]["ratio"] or 0)
        summary.update(
            {
                "throughput_ratio_vs_trl": per_config[best]["ratio"],
                "course_config": best,
                "trl_reference": per_config[best]["reference"],
                "trl_reference_reaches_equal_accuracy": per_config[best]["reference_reaches_equal_accuracy"],
                "throughput_ratio_vs_trl_by_config": {n: v["ratio"] for n, v in per_config.items()},
                "throughput_ratio_vs_trl_whole_run_by_config": {n: v["ratio"] for n, v in whole_run.items()},
            }
        )
    for name, metrics in by_name.items():  # the share of the matmul peak in the configuration's own precision
        summary["configs"][name]["precision"] = precision[name]
        peak = peaks[precision[name]]
        summary["configs"][name]["fraction_of_matmul_flops"] = round(metrics["flops_per_second"] / peak, 4)
    return summary


def format_table(summary: dict) -> str:
    """A markdown table of the medians per configuration."""
    head = (
        "| config | seconds | first step s | warm-up s | target tok/s | steady tok/s | padding | held-out "
        "| memory MB | of matmul peak (own precision) |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, m in summary["configs"].items():
        lines.append(
            f"| {name} | {m['seconds']:.1f} | {m['first_step_seconds']:.2f} | {m['warmup_seconds']:.1f} "
            f"| {m['tokens_per_second']:,.0f} | {m['steady_tokens_per_second']:,.0f} "
            f"| {m['padding_share']:.1%} | {m['held_out_accuracy']:.3f} | {m['peak_memory_mb']:.0f} "
            f"| {m['fraction_of_matmul_flops']:.1%} |"
        )
    return "\n".join(lines)
