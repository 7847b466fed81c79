# Notebook 09 follow-up (issue 23): is "known or unknown" linearly readable from the SFT model's hidden states at the
# city position ("NAME was born in" -> ?)? A logistic-regression probe per layer, fit on the pair people (900 known +
# 900 unknown names), scored on 09's eval people (100 + 100) by balanced accuracy.
import torch
from _sft_model import balanced_accuracy, base_and_sft_model, city_position, fit_probe, nine_split
from sft_course.world import make_world

base, tok, sft = base_and_sft_model()
world = make_world()
eval_known, eval_unknown, pair_known, pair_unknown = nine_split(world)
eval_known, pair_known = [p.name for p in eval_known], [p.name for p in pair_known]


def probe(xtr, ytr, xte, yte, steps=500, wd=1e-3):
    return balanced_accuracy(fit_probe(xtr, ytr, steps, wd)(xte), yte)


htr_k, ltr_k = city_position(sft, tok, pair_known); htr_u, ltr_u = city_position(sft, tok, pair_unknown)
hte_k, lte_k = city_position(sft, tok, eval_known); hte_u, lte_u = city_position(sft, tok, eval_unknown)
ytr = torch.cat([torch.zeros(900), torch.ones(900)]); yte = torch.cat([torch.zeros(100), torch.ones(100)])
for layer in range(len(htr_k)):
    acc = probe(torch.cat([htr_k[layer], htr_u[layer]]), ytr, torch.cat([hte_k[layer], hte_u[layer]]), yte)
    print(f"hidden state {layer}: probe balanced accuracy {acc:.3f}", flush=True)
# features of the output distribution: top prob, entropy
for name, f in (("top prob", lambda l: l.softmax(-1).max(-1).values[:, None]),
                ("entropy", lambda l: -(l.softmax(-1) * l.log_softmax(-1)).sum(-1, keepdim=True)),
                ("sorted top-5 logits", lambda l: l.topk(5).values)):
    acc = probe(torch.cat([f(ltr_k), f(ltr_u)]), ytr, torch.cat([f(lte_k), f(lte_u)]), yte)
    print(f"{name}: probe balanced accuracy {acc:.3f}", flush=True)
# check: accuracy on the probe's own training people, and weight decay
for layer in (2, 4):
    x = torch.cat([htr_k[layer], htr_u[layer]])
    for wd in (0.0, 1e-2, 1e-1):
        print(f"layer {layer}, wd {wd}: train {probe(x, ytr, x, ytr, wd=wd):.3f}, eval "
              f"{probe(x, ytr, torch.cat([hte_k[layer], hte_u[layer]]), yte, wd=wd):.3f}", flush=True)
