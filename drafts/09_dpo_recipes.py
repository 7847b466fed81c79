# Notebook 09 follow-up (issue 23): DPO recipes tried outside the notebook, one seed each; see drafts/README.md.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_dpo_recipes.py NAMES:METHOD:LR[:BETA:ALPHA:STEPS:SEED]

import copy, json, random, sys, time, os
import torch, torch.nn.functional as F
from sft_course import load_model
from sft_course.dpo import (collate_pairs, dpo_loss, preference_pairs, response_logps, tokenize_pairs,
                            training_values, unknown_names, abstention_report)
from sft_course.experiment import training_rows
from sft_course.masking import tokenize_examples
from sft_course.training import TrainConfig, train
from sft_course.world import HELD_OUT_SPLIT, make_world

torch.manual_seed(0)
base, tok = load_model(None)
SFT = "/tmp/09_dpo_recipes_sft.pt"  # the SFT model, trained once and reused
sft = copy.deepcopy(base)
if os.path.exists(SFT):
    sft.load_state_dict(torch.load(SFT))
else:
    ex, _ = tokenize_examples(tok, training_rows("sentence"), max_length=128)
    train(sft, ex, tok.pad_token_id, TrainConfig(lr=6e-4, epochs=2.0, seed=0, eval_every=0), progress=False)
    torch.save(sft.state_dict(), SFT)
sft.eval()
world = make_world()
values = training_values(world)
held = world.split(HELD_OUT_SPLIT)
pair_known, eval_known = held[:200], held[200:300]
bio_words = {w.strip(".,") for t in world.biographies for w in t.split()}

def novel_names(n, seed):
    rng = random.Random(seed); C = "bdfgklmnprstvz"; V = "aeiou"; out = set()
    while len(out) < n:
        def word(k): return "".join(rng.choice(C) + rng.choice(V) for _ in range(k)).capitalize()
        f, l = word(2), word(3)
        if f not in bio_words and l not in bio_words: out.add(f"{f} {l}")
    return sorted(out)

def names_for(kind):
    if kind == "recombined":
        ns = unknown_names(world, 300, seed=0)
    else:
        ns = novel_names(300, 0); random.Random(1).shuffle(ns)
    return ns[:200], ns[200:]

def report(m, ev_unknown):
    r = abstention_report(m, tok, eval_known, ev_unknown)
    return {k: round(r[k], 2) for k in ("unknown_confident_wrong_rate", "unknown_abstain_rate", "known_accuracy", "known_abstain_rate")}

def chosen_sft(start, tokd, steps, lr, seed):
    m = copy.deepcopy(start)
    train(m, [t["chosen"] for t in tokd], tok.pad_token_id, TrainConfig(lr=lr, total_steps=steps, batch_size=32, seed=seed, eval_every=0), progress=False)
    return m.eval()

def dpo(start, tokd, steps, lr, beta, seed, alpha=0.0):
    pol, ref = copy.deepcopy(start), copy.deepcopy(start)
    ref.eval().requires_grad_(False)
    opt = torch.optim.AdamW(pol.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed); q = []
    pol.train()
    for _ in range(steps):
        if not q: q = rng.sample(range(len(tokd)), len(tokd))
        pk, q = q[:32], q[32:]
        b = collate_pairs([tokd[i] for i in pk], tok.pad_token_id)
        pc, pr = response_logps(pol, b).chunk(2)
        with torch.no_grad(): rc, rr = response_logps(ref, b).chunk(2)
        loss, _, _ = dpo_loss(pc, pr, rc, rr, beta)
        if alpha:
            ntok = (b["labels"][: len(pk), 1:] != -100).sum()
            loss = loss + alpha * (-pc.sum() / ntok)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(pol.parameters(), 1.0); opt.step()
    return pol.eval()

for spec in sys.argv[1:]:
    # spec: names:method:lr[:beta:alpha:steps:seed:known_rejected]
    parts = spec.split(":")
    kind, method, lr = parts[0], parts[1], float(parts[2])
    beta = float(parts[3]) if len(parts) > 3 else 0.1
    alpha = float(parts[4]) if len(parts) > 4 else 0.0
    steps = int(parts[5]) if len(parts) > 5 else 120
    seed = int(parts[6]) if len(parts) > 6 else 0
    kr = parts[7] if len(parts) > 7 else "abstention"
    pu, eu = names_for(kind)
    pairs = preference_pairs(pair_known, pu, values, seed=seed, known_rejected=kr)
    tokd = tokenize_pairs(tok, pairs)
    t = time.time()
    if method == "sftmodel": m = sft
    elif method == "chosen": m = chosen_sft(sft, tokd, steps, lr, seed)
    elif method == "dpo": m = dpo(sft, tokd, steps, lr, beta, seed, alpha)
    elif method == "staged": m = dpo(chosen_sft(sft, tokd, steps // 2, 3e-4, seed), tokd, steps - steps // 2, lr, beta, seed, alpha)
    print(json.dumps({"spec": spec, **report(m, eu), "s": round(time.time() - t)}), flush=True)
