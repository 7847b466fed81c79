"""Shared fixtures: the course tokenizer, from the bundled model folder when it exists."""

import pytest
from transformers import AutoTokenizer

from sft_course import BUNDLED_MODEL_DIR
from sft_course.tokenizer import train_tokenizer
from sft_course.world import make_world


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled tokenizer; before the model folder exists, the identical one trained the same way."""
    if (BUNDLED_MODEL_DIR / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(BUNDLED_MODEL_DIR))
    return train_tokenizer(make_world().biographies)
