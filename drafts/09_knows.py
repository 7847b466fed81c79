# Notebook 09 follow-up (issue 23): does the SFT model know what it knows? One number per name: the probability
# of its greedy city at the city position ("NAME was born in" -> city), for held-out known people vs unknown names.
# Usage: flock /tmp/heavy.lock .venv/bin/python drafts/09_knows.py
import torch
from _sft_model import base_and_sft_model
from sft_course.dpo import ask, unknown_names
from sft_course.generation import chat_prompt
from sft_course.world import HELD_OUT_SPLIT, make_world

base, tok, sft = base_and_sft_model()  # drafts/_sft_model.py: trained once, cached
world = make_world()
held = world.split(HELD_OUT_SPLIT)
names = unknown_names(world, 300, seed=0)

@torch.no_grad()
def city_confidence(model, ns):
    """max next-token probability at the city position, and that token, for each name."""
    texts = [chat_prompt(tok, ask(n)) + f"{n} was born in" for n in ns]
    tok.padding_side = "left"
    b = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    p = model(**b).logits[:, -1].float().softmax(-1)
    tok.padding_side = "right"
    m, i = p.max(-1)
    return m.tolist(), i.tolist()

def auroc(pos, neg):
    # P(score of a known > score of an unknown), ties count half
    s = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return s / (len(pos) * len(neg))

def best_threshold(pos, neg):
    best = (0, None)
    for t in sorted(set(pos + neg)):
        acc = (sum(a >= t for a in pos) + sum(b < t for b in neg)) / (len(pos) + len(neg))
        best = max(best, (acc, t))
    return best

for label, kn, un in (("pair side (200+200)", held[:200], names[:200]), ("eval side (100+100)", held[200:300], names[200:300])):
    ck, ik = city_confidence(sft, [p.name for p in kn])
    cu, iu = city_confidence(sft, un)
    truth_first = [tok(" " + p.facts["birth_city"], add_special_tokens=False)["input_ids"][0] for p in kn]
    right = [a == b for a, b in zip(ik, truth_first)]
    acc, t = best_threshold(ck, cu)
    print(f"{label}: known mean max-prob {sum(ck)/len(ck):.3f}, unknown {sum(cu)/len(cu):.3f}; AUROC {auroc(ck, cu):.3f}; "
          f"best threshold {t:.3f} accuracy {acc:.3f}; known first city token right {sum(right)/len(right):.2f}")
    # known people the model gets right vs unknown
    ckr = [c for c, r in zip(ck, right) if r]
    print(f"   right-known vs unknown AUROC {auroc(ckr, cu):.3f}; wrong-known mean conf "
          f"{sum(c for c, r in zip(ck, right) if not r)/max(1, len(ck)-len(ckr)):.3f}")
    qs = lambda xs: [round(sorted(xs)[int(q * (len(xs) - 1))], 3) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
    print(f"   quantiles known {qs(ck)} unknown {qs(cu)}")
