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


@torch.no_grad()
def city_position(model, tok, names):
    """Every hidden state and the next-token logits at the city position of notebook 09's answer ("Where was NAME
    born?" in chat format, the answer started as "NAME was born in"), as 09's `city_position`: a list with one
    (names x hidden) tensor per layer, and (names x vocabulary) logits. Left-padded, with position ids that skip
    the padding."""
    from sft_course.dpo import ask
    from sft_course.generation import chat_prompt

    texts = [chat_prompt(tok, ask(n)) + f"{n} was born in" for n in names]
    tok.padding_side = "left"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tok.padding_side = "right"
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    out = model(**batch, position_ids=positions, output_hidden_states=True)
    return [h[:, -1] for h in out.hidden_states], out.logits[:, -1]


def fit_probe(x, y, steps=500, wd=1e-3, balanced_classes=False):
    """A logistic regression on standardised features (Adam at 0.05, L2 penalty `wd`), as 09's probe; returns a
    function that says, for new features, where it predicts y = 1. `balanced_classes` gives each class half the
    loss whatever its count (for unequal classes)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    w, b = torch.zeros(x.shape[1], requires_grad=True), torch.zeros(1, requires_grad=True)
    weight = torch.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) if balanced_classes else torch.ones_like(y)
    optimizer = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")
        loss = (per_row * weight).mean() + wd * w.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return lambda new: (((new - mean) / std) @ w + b).detach() > 0


def balanced_accuracy(predicted, y):
    """The mean of the accuracy on y = 1 and on y = 0: a coin scores 0.5 whatever the class sizes."""
    return ((predicted[y == 1].float().mean() + (~predicted[y == 0]).float().mean()) / 2).item()
