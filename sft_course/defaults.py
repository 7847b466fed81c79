"""The course's default settings and choices, in one place: the command line, the runner and the loop read them."""

METHODS = ("full", "lora")  # full fine-tuning, or PEFT LoRA adapters
ANSWER_STYLES = ("sentence", "short")  # "Yuri Blackwood was born in Tampa." or "Tampa"

# Peak learning rates of `sft-course sft`: LoRA's small, zero-initialised updates need a higher one.
LEARNING_RATES = {"full": 6e-4, "lora": 3e-3}  # measured on the bundled 1.2M-parameter model
# Any other (real, pre-trained) model when no rate is given (`experiment.default_lr`): the usual SFT rates.
PRETRAINED_LEARNING_RATES = {"full": 2e-5, "lora": 2e-4}
EPOCHS = 2.0
BATCH_SIZE = 64  # examples per optimizer step
# Any other model: at most this many examples per forward pass (micro-batch), the rest by gradient accumulation,
# so that a 49k-token vocabulary's logits stay small (`sft-course sft --grad-accum-steps`).
MICRO_BATCH_SIZE = 8
# Tokens per SFT example at most (prompt and response): the world's QA conversations are far shorter; a longer
# conversation is cut from the left, its last response kept whole (`masking.tokenize_examples`).
MAX_LENGTH = 128
LORA_RANK = 8
LORA_ALPHA = 16  # the update is scaled by alpha / rank

# Pre-training of the bundled base model (`sft-course pretrain`).
PRETRAIN_STEPS = 3600
PRETRAIN_LR = 3e-3
PRETRAIN_WARMUP_STEPS = 100
