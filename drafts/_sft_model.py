"""The SFT model that the 09 drafts start from (seed 0, 2 epochs at 6e-4 on the sentence rows, as notebook 09),
trained once and cached in /tmp so each draft loads it instead of training it again."""
import copy
import os

import torch

from sft_course import load_model
from sft_course.experiment import training_rows
from sft_course.masking import tokenize_examples
from sft_course.training import TrainConfig, train

CACHE = "/tmp/09_dpo_recipes_sft.pt"


def base_and_sft_model():
    """`(base, tokenizer, sft)`: the bundled base model, its tokenizer, and the SFT model in eval mode."""
    torch.manual_seed(0)
    base, tok = load_model(None)
    sft = copy.deepcopy(base)
    if os.path.exists(CACHE):
        sft.load_state_dict(torch.load(CACHE))
    else:
        ex, _ = tokenize_examples(tok, training_rows("sentence"), max_length=128)
        train(sft, ex, tok.pad_token_id, TrainConfig(lr=6e-4, epochs=2.0, seed=0, eval_every=0), progress=False)
        torch.save(sft.state_dict(), CACHE)
    return base, tok, sft.eval()
