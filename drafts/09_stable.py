# Notebook 09 follow-up (issue 23): the comparison of 09 with 09's own split (eval: the first 100 held-out people and
# the first 100 unknown names; pairs: the next 900 of each, built with seed 0), to make its DPO stage stable.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_stable.py SPEC [SPEC ...]
# SPEC: comma-separated key=value. Keys (defaults): m=chosen|staged, steps=80 (the whole budget), sft_steps=40
#   (m=staged: SFT-on-chosen steps; DPO gets steps - sft_steps), lr=1e-4 (DPO rate), sft_lr=3e-4 (SFT on chosen),
#   beta=0.1, seed=0, labels=truth|conf (conf: the SFT model's top city probability labels the pairs, R-Tuning style:
#   a known person it is unsure about gets the abstention as chosen; an unknown name it is sure about is dropped),
#   thr=0.9 (the confidence threshold).
import copy, json, sys, time
import torch
from _sft_model import base_and_sft_model, dpo_steps, nine_split
from sft_course.dpo import (abstention_report, ask, preference_pairs, tokenize_pairs, training_values)
from sft_course.generation import chat_prompt
from sft_course.training import TrainConfig, train
from sft_course.world import make_world

base, tok, sft = base_and_sft_model()  # drafts/_sft_model.py: trained once, cached
world = make_world()
values = training_values(world)
eval_known, eval_unknown, pair_known, pair_unknown = nine_split(world)


@torch.no_grad()
def city_confidence(model, ns, rows=100):
    out = []
    for i in range(0, len(ns), rows):
        texts = [chat_prompt(tok, ask(n)) + f"{n} was born in" for n in ns[i:i + rows]]
        tok.padding_side = "left"
        b = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        tok.padding_side = "right"
        pos = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        out += model(**b, position_ids=pos).logits[:, -1].softmax(-1).max(-1).values.tolist()
    return out


def report(m):
    r = abstention_report(m, tok, eval_known, eval_unknown)
    return {k: round(r[k], 2) for k in ("unknown_confident_wrong_rate", "unknown_abstain_rate", "known_accuracy",
                                         "known_abstain_rate")}


def chosen_sft(start, tokd, steps, lr, seed):
    m = copy.deepcopy(start)
    train(m, [t["chosen"] for t in tokd], tok.pad_token_id,
          TrainConfig(lr=lr, total_steps=steps, batch_size=32, seed=seed, eval_every=0), progress=False)
    return m.eval()


def dpo(start, tokd, steps, lr, beta, seed):
    # as 09's dpo_train (drafts/_sft_model.dpo_steps), on a copy of `start`
    return dpo_steps(copy.deepcopy(start), tokd, tok.pad_token_id, steps, lr, beta, seed)


PAIRS = {}
def pairs_for(labels, thr):
    if (labels, thr) in PAIRS: return PAIRS[(labels, thr)]
    pairs = preference_pairs(pair_known, pair_unknown, values, seed=0, known_rejected="abstention")
    if labels == "conf":
        conf = city_confidence(sft, [p["person"] if isinstance(p["person"], str) else p["person"] for p in pairs])
        out, flips, drops = [], 0, 0
        for p, c in zip(pairs, conf):
            if p["kind"] == "known" and c < thr:   # unsure about someone it read about: refuse (R-Tuning)
                p = {**p, "chosen": p["rejected"], "rejected": p["chosen"]}; flips += 1
            elif p["kind"] == "unknown" and c >= thr:   # sure about a name it never read: no right answer to choose
                drops += 1; continue
            out.append(p)
        print(f"conf labels at {thr}: {flips} known pairs flipped to abstain, {drops} unknown pairs dropped, {len(out)} left", flush=True)
        pairs = out
    PAIRS[(labels, thr)] = tokenize_pairs(tok, pairs)
    return PAIRS[(labels, thr)]


for spec in sys.argv[1:]:
    o = dict(kv.split("=") for kv in spec.split(","))
    m, lr, beta, seed = o.get("m", "chosen"), float(o.get("lr", 1e-4)), float(o.get("beta", 0.1)), int(o.get("seed", 0))
    steps, sft_steps, sft_lr = int(o.get("steps", 80)), int(o.get("sft_steps", 40)), float(o.get("sft_lr", 3e-4))
    tokd = pairs_for(o.get("labels", "truth"), float(o.get("thr", 0.9)))
    t = time.time(); hist = []
    if m == "chosen":
        model = chosen_sft(sft, tokd, steps, sft_lr, seed)
    else:
        half = chosen_sft(sft, tokd, sft_steps, sft_lr, seed)
        model, hist = dpo(half, tokd, steps - sft_steps, lr, beta, seed)
    print(json.dumps({"spec": spec, **report(model), "s": round(time.time() - t),
                      "dpo_first_last": hist[:1] + hist[-1:]}), flush=True)
