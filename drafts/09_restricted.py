# Notebook 09 follow-up (issue 23): does training fewer parameters turn the SFT model's confidence into abstention?
# 09's split, SFT model and DPO loop (as drafts/09_stable.py). First: how well a single logit shift of " the" at the
# city position (the abstention's first token) would abstain, the upper bound of the cheapest possible change.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_restricted.py SPEC ...
# SPEC keys: m=chosen|staged, train=all|lora|last|head, rank=8, steps=80, sft_steps=40, lr=3e-5 (DPO), sft_lr=3e-4,
#   beta=0.1, seed=0
import copy, json, sys, time
import torch
from _sft_model import base_and_sft_model, city_position, dpo_steps, nine_split
from sft_course.dpo import (abstention_report, preference_pairs, tokenize_pairs, training_values)
from sft_course.lora import add_lora
from sft_course.training import TrainConfig, train
from sft_course.world import make_world

base, tok, sft = base_and_sft_model()
world = make_world()
values = training_values(world)
eval_known, eval_unknown, pair_known, pair_unknown = nine_split(world)
pairs = preference_pairs(pair_known, pair_unknown, values, seed=0, known_rejected="abstention")
tokd = tokenize_pairs(tok, pairs)
THE = tok(" the", add_special_tokens=False)["input_ids"]
assert len(THE) == 1, THE
THE = THE[0]


def gap_the(model, ns):
    # logit of " the" minus the top logit at the city position
    lg = city_position(model, tok, ns)[1]
    return (lg[:, THE] - lg.max(-1).values).tolist()


if "bound" in sys.argv[1:]:
    gk, gu = gap_the(sft, [p.name for p in eval_known]), gap_the(sft, eval_unknown)
    best = max(((sum(g + s > 0 for g in gu) / 100 + sum(g + s <= 0 for g in gk) / 100) / 2, s)
               for s in [x / 4 for x in range(0, 80)])
    print(f"shift of the ' the' logit: best balanced accuracy {best[0]:.3f} at +{best[1]}", flush=True)


def report(m):
    r = abstention_report(m, tok, eval_known, eval_unknown)
    out = {k: round(r[k], 2) for k in ("unknown_confident_wrong_rate", "unknown_abstain_rate", "known_accuracy",
                                        "known_abstain_rate")}
    out["sep"] = round((out["unknown_abstain_rate"] + 1 - out["known_abstain_rate"]) / 2, 3)
    return out


def restrict(model, how, rank, seed):
    if how == "all":
        return model
    if how == "lora":
        return add_lora(model, tok, rank=rank, seed=seed, train_chat_tokens=False)
    for p in model.parameters():
        p.requires_grad_(False)
    if how == "last":
        for p in model.model.layers[-1].parameters():
            p.requires_grad_(True)
    elif how == "head":  # the last block's MLP and the final norm
        for p in model.model.layers[-1].mlp.parameters():
            p.requires_grad_(True)
        model.model.norm.weight.requires_grad_(True)
    return model


def chosen_sft(m, steps, lr, seed):
    train(m, [t["chosen"] for t in tokd], tok.pad_token_id,
          TrainConfig(lr=lr, total_steps=steps, batch_size=32, seed=seed, eval_every=0), progress=False)
    return m.eval()


def dpo(pol, steps, lr, beta, seed):
    history = dpo_steps(pol, tokd, tok.pad_token_id, steps, lr, beta, seed)[1]
    return pol, [h[0] for h in history]


for spec in [s for s in sys.argv[1:] if s not in ("bound", "frontier")]:
    o = dict(kv.split("=") for kv in spec.split(","))
    m, how, seed = o.get("m", "chosen"), o.get("train", "all"), int(o.get("seed", 0))
    steps, sft_steps = int(o.get("steps", 80)), int(o.get("sft_steps", 40))
    lr, sft_lr, beta = float(o.get("lr", 3e-5)), float(o.get("sft_lr", 3e-4)), float(o.get("beta", 0.1))
    t = time.time(); hist = []
    model = restrict(copy.deepcopy(sft), how, int(o.get("rank", 8)), seed)
    torch.manual_seed(seed)
    if m == "chosen":
        model = chosen_sft(model, steps, sft_lr, seed)
    else:
        model = chosen_sft(model, sft_steps, sft_lr, seed)
        if steps > sft_steps:
            model, hist = dpo(model, steps - sft_steps, lr, beta, seed)
    print(json.dumps({"spec": spec, **report(model), "s": round(time.time() - t), "dpo": hist[:1] + hist[-1:]}), flush=True)

if "frontier" in sys.argv[1:]:
    gk, gu = gap_the(sft, [p.name for p in eval_known]), gap_the(sft, eval_unknown)
    for s in [6, 8, 9, 10, 11, 12, 12.5, 13, 14, 15]:
        print(f"shift +{s}: known abstain {sum(g + s > 0 for g in gk) / 100:.2f}, unknown abstain {sum(g + s > 0 for g in gu) / 100:.2f}")
