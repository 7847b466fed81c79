# Notebook 09 follow-up (issue 23): DPO recipes tried outside the notebook, one seed each; see drafts/README.md.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_dpo_recipes.py SPEC [SPEC ...]
# SPEC: comma-separated key=value, e.g. m=dpo,lr=3e-4,rej=greedy. Keys (defaults):
#   m=chosen|dpo|staged|sftmodel, lr=1e-4 (DPO rate; SFT-on-chosen rate for m=chosen), beta=0.1, alpha=0 (RPO: NLL
#   on chosen), steps=120 (the whole budget), seed=0, rej=random|greedy (unknown names' rejected answer: a random
#   training city, or the SFT model's own greedy answer), sft_steps=60 and sft_lr=3e-4 (m=staged: the SFT-on-chosen
#   stage; DPO gets steps - sft_steps), ref=start|sft (m=staged: DPO's reference is the stage's start or the SFT model),
#   known=200 (known people in the pairs: held-out ones first, then training people), unknown=200
#   (unknown names in the pairs), names=recombined|novel.
import copy, json, random, sys, time
import torch
from _sft_model import base_and_sft_model
from sft_course.dpo import (collate_pairs, dpo_loss, preference_pairs, response_logps, tokenize_pairs,
                            training_values, unknown_names, abstention_report, ask, classify_unknown)
from sft_course.generation import chat_prompt, generate
from sft_course.training import TrainConfig, train
from sft_course.world import HELD_OUT_SPLIT, make_world

base, tok, sft = base_and_sft_model()  # drafts/_sft_model.py: trained once, cached
world = make_world()
values = training_values(world)
held = world.split(HELD_OUT_SPLIT)
bio_words = {w.strip(".,") for t in world.biographies for w in t.split()}


def novel_names(n, seed):
    rng = random.Random(seed); C = "bdfgklmnprstvz"; V = "aeiou"; out = set()
    while len(out) < n:
        def word(k): return "".join(rng.choice(C) + rng.choice(V) for _ in range(k)).capitalize()
        f, l = word(2), word(3)
        if f not in bio_words and l not in bio_words: out.add(f"{f} {l}")
    return sorted(out)


def names_for(kind, n=200):
    if kind == "recombined":
        ns = unknown_names(world, 100 + max(n, 200), seed=0)
        return ns[:200] + ns[300:100 + n], ns[200:300]
    else:
        ns = novel_names(300, 0); random.Random(1).shuffle(ns)
    return ns[:200], ns[200:]


def report(m, ev_known, ev_unknown):
    r = abstention_report(m, tok, ev_known, ev_unknown)
    return {k: round(r[k], 2) for k in ("unknown_confident_wrong_rate", "unknown_abstain_rate", "known_accuracy", "known_abstain_rate")}


def chosen_sft(start, tokd, steps, lr, seed):
    m = copy.deepcopy(start)
    train(m, [t["chosen"] for t in tokd], tok.pad_token_id, TrainConfig(lr=lr, total_steps=steps, batch_size=32, seed=seed, eval_every=0), progress=False)
    return m.eval()


def dpo(start, tokd, steps, lr, beta, seed, alpha=0.0, ref=None):
    pol = copy.deepcopy(start)
    ref = copy.deepcopy(start if ref is None else ref)
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


GREEDY = {}
def greedy_rejected(pairs):
    """unknown pairs: rejected = the SFT model's own greedy answer when it is a confident one."""
    unk = [p for p in pairs if p["kind"] == "unknown"]
    missing = [p["person"] for p in unk if p["person"] not in GREEDY]
    if missing:
        outs = generate(sft, tok, [chat_prompt(tok, ask(n)) for n in missing])
        for n, o in zip(missing, outs):
            GREEDY[n] = o["text"].strip() if o["stopped"] and classify_unknown(o["text"], n) == "confident_wrong" else None
    for p in unk:
        if GREEDY[p["person"]]:
            p["rejected"] = GREEDY[p["person"]]
    return pairs


for spec in sys.argv[1:]:
    o = dict(kv.split("=") for kv in spec.split(","))
    m, lr, beta, alpha = o.get("m", "chosen"), float(o.get("lr", 1e-4)), float(o.get("beta", 0.1)), float(o.get("alpha", 0))
    steps, seed, sft_steps = int(o.get("steps", 120)), int(o.get("seed", 0)), int(o.get("sft_steps", 60))
    sft_lr, nk = float(o.get("sft_lr", 3e-4)), int(o.get("known", 200))
    pu, eu = names_for(o.get("names", "recombined"), int(o.get("unknown", 200)))
    known_pool = held[:200] + held[300:] + world.split("train")
    pair_known, eval_known = known_pool[:nk], held[200:300]
    pairs = preference_pairs(pair_known, pu, values, seed=seed, known_rejected="abstention")
    if o.get("rej", "random") == "greedy":
        pairs = greedy_rejected(pairs)
    tokd = tokenize_pairs(tok, pairs)
    t = time.time()
    if m == "sftmodel": model = sft
    elif m == "chosen": model = chosen_sft(sft, tokd, steps, lr, seed)
    elif m == "dpo": model = dpo(sft, tokd, steps, lr, beta, seed, alpha)
    elif m == "staged":
        half = chosen_sft(sft, tokd, sft_steps, sft_lr, seed)
        model = dpo(half, tokd, steps - sft_steps, lr, beta, seed, alpha, ref=sft if o.get("ref") == "sft" else None)
    print(json.dumps({"spec": spec, **report(model, eval_known, eu), "s": round(time.time() - t)}), flush=True)
