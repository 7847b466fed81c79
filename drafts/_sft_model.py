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


def nine_split(world):
    """Notebook 09's people: `(eval_known, eval_unknown, pair_known, pair_unknown)`: the first 100 held-out people
    and 100 unknown names are scored; the pairs use the next 900 of each (known: the other held-out people, then
    the SFT training people)."""
    from sft_course.dpo import unknown_names
    from sft_course.world import HELD_OUT_SPLIT, TRAIN_SPLIT

    names = unknown_names(world, 1000, seed=0)
    held = world.split(HELD_OUT_SPLIT)
    return held[:100], names[:100], (held[100:] + world.split(TRAIN_SPLIT))[:900], names[100:]


def dpo_steps(policy, tokd, pad_token_id, steps, lr, beta, seed):
    """As 09's dpo_train, in place: the reference log-probabilities are the policy's own before the first step
    (computed once), then `steps` steps of 32 pairs (AdamW on the trainable weights, clip 1). Returns the policy in
    eval mode and a history of (loss, mean chosen log-prob, mean rejected log-prob)."""
    import random

    from sft_course.dpo import collate_pairs, dpo_loss, response_logps

    policy.eval()
    with torch.no_grad():
        parts = [response_logps(policy, collate_pairs(tokd[i : i + 64], pad_token_id)).chunk(2)
                 for i in range(0, len(tokd), 64)]
    ref_chosen, ref_rejected = torch.cat([c for c, _ in parts]), torch.cat([r for _, r in parts])
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng, queue, history = random.Random(seed), [], []
    policy.train()
    for _ in range(steps):
        if not queue:
            queue = rng.sample(range(len(tokd)), len(tokd))
        picked, queue = queue[:32], queue[32:]
        chosen, rejected = response_logps(policy, collate_pairs([tokd[i] for i in picked], pad_token_id)).chunk(2)
        loss, _, _ = dpo_loss(chosen, rejected, ref_chosen[picked], ref_rejected[picked], beta)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        history.append((round(loss.item(), 3), round(chosen.mean().item(), 1), round(rejected.mean().item(), 1)))
    return policy.eval(), history
