"""Companion package of the SFT course: the world, data, training loop, LoRA helpers and evaluation."""

from sft_course.modeling import BUNDLED_MODEL_DIR, load_model, pick_device

__all__ = ["BUNDLED_MODEL_DIR", "load_model", "pick_device"]
