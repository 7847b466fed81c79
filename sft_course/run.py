"""One SFT run's settings (`TrainConfig`) and record (`TrainResult`): plain data that `loss`, `checkpoint` and
`training` all read, so it sits below them (`training.train` runs it; `checkpoint` saves and restores it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sft_course.defaults import BATCH_SIZE, EPOCHS, LEARNING_RATES


@dataclass
class TrainConfig:
    """Hyper-parameters of one SFT run. `batch_size` counts examples per optimizer step.

    The run lasts `epochs` passes over the data, or exactly `total_steps` optimizer steps when that is set
    (the schedule then spans those steps, and the data order continues into further epochs as needed).
    """

    lr: float = LEARNING_RATES["full"]
    epochs: float = EPOCHS
    total_steps: int | None = None  # optimizer steps of the run; overrides `epochs`
    batch_size: int = BATCH_SIZE
    grad_accum_steps: int = 1  # micro-batches per optimizer step; batch_size must divide by it
    # or: split each step into micro-batches of similar lengths, at most this many padded token slots each
    # (`collate.token_budget_micro_batches`): the same gradient, less padding when short and long rows mix
    micro_batch_tokens: int | None = None
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 50  # optimizer steps between evaluations on the eval examples (0: only at the end)
    seed: int = 0
    max_steps: int | None = None  # stop early (e.g. to simulate an interruption); the schedule stays the same
    checkpoint_dir: str | None = None
    save_every: int = 0  # optimizer steps between checkpoints (0: none)
    # Speed (benchmarks/README.md). The default: PyTorch's fused AdamW kernel (the same update rule in one kernel)
    # and the output layer on target positions only (the same loss, summed in another order). Compilation and
    # bf16 change more than the order of a sum, or cost time up front, so they are opt-in.
    fused_adamw: bool = True  # torch.optim.AdamW(fused=True) where every parameter allows it (see make_optimizer)
    compile: bool = False  # torch.compile the loss; compiled kernels are cached on disk (compile_cache_dir)
    # project only the positions that predict a target token to the vocabulary; None: wherever it is possible
    # (one process, a model whose forward does not rescale its logits), True: required, False: every position
    logits_on_targets: bool | None = None
    bf16: bool | None = None  # bf16 autocast of the forward pass (fp32 weights and state); None: on CUDA only
    # the lean loss (`lean_loss`): a micro-batch's shared prefix run once, the output layer's cross-entropy in chunks
    # of target positions, LoRA's adapter products in CPU-fast layouts (`lora_products`); the same loss and gradient
    # up to rounding (the default for SmolLM2, `resolve_run`)
    lean: bool = False
    # LoRA's adapter products in CPU-fast layouts (`lora_products`) without the rest of the lean loss: the same layer
    # up to float rounding; faster on the bundled model, whose prompts share no prefix worth running once (notebook 04)
    lora_products: bool = False
    # {substring of a parameter name: factor}: those parameters train at factor x the scheduled rate (first match)
    lr_multipliers: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a run did: per-step history, evaluations, wall time and the number of target tokens trained on."""

    history: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0  # the optimizer steps' wall time: evaluations and checkpoint saves are left out
    target_tokens: int = 0
    steps: int = 0
    eval_seconds: float = 0.0  # the periodic evaluations' wall time (not in train_seconds)
    first_step_seconds: float = 0.0  # the first step of the latest call (in train_seconds): compilation, warm-up
    computed_tokens: int = 0  # token slots the forward passes computed, padding included
    padding_tokens: int = 0  # of which padding

    @property
    def final_train_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")

    @property
    def target_tokens_per_second(self) -> float:
        return self.target_tokens / self.train_seconds if self.train_seconds else 0.0

    @property
    def padding_share(self) -> float:
        """The share of computed token slots that were padding."""
        return self.padding_tokens / self.computed_tokens if self.computed_tokens else 0.0
