"""Attention of the lean step (a prefix of 24 and 8 packed rows): one SDPA call over the packed row with a dense
block mask, against the rows gathered into a batch (each row its prefix and itself). Not adopted (README).
Usage: python benchmarks/scripts/attention_rows.py"""
import time, torch, torch.nn.functional as F
torch.manual_seed(0)
P, lens = 24, [31, 30, 28, 29, 27, 30, 33, 27]
L = P + sum(lens); H, KV, D = 9, 3, 64
row = torch.cat([torch.full((P,), -1)] + [torch.full((n,), i) for i, n in enumerate(lens)])
order = torch.arange(L)
dense = (((row[:, None] == row[None, :]) | (row[None, :] == -1)) & (order[None, :] <= order[:, None]))[None, None]
# gathered layout: row 0 = the prefix, rows 1.. = each example
starts = [P]; 
for n in lens[:-1]: starts.append(starts[-1] + n)
own = [list(range(P))] + [list(range(s, s + n)) for s, n in zip(starts, lens)]
nmax = max(len(o) for o in own); R = len(own)
q_idx = torch.zeros(R, nmax, dtype=torch.long); q_ok = torch.zeros(R, nmax, dtype=torch.bool)
for r, o in enumerate(own): q_idx[r, :len(o)] = torch.tensor(o); q_ok[r, :len(o)] = True
k_idx = torch.cat([torch.arange(P).expand(R, P), q_idx], 1)
i = torch.arange(nmax)
mask = torch.cat([torch.ones(R, nmax, P, dtype=torch.bool), (i[None, :] <= i[:, None]).expand(R, nmax, nmax)], 2)
mask[0, :, :P] = False
mask = mask & torch.cat([torch.ones(R, 1, P, dtype=torch.bool), q_ok[:, None, :]], 2)
mask[~q_ok] = False; mask[~q_ok, 0] = True  # padded queries see one key (no NaN), output dropped
mask = mask[:, None]
flat_q = q_idx[q_ok]
def dense_attn(q, k, v):
    kk, vv = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
    return F.sdpa(q, kk, vv, attn_mask=dense) if False else F.scaled_dot_product_attention(q, kk, vv, attn_mask=dense)
def rows_attn(q, k, v):
    qr = q[0][:, q_idx].transpose(0, 1)         # (R, H, nmax, D)
    kr = k[0][:, k_idx].transpose(0, 1); vr = v[0][:, k_idx].transpose(0, 1)
    kr, vr = kr.repeat_interleave(H // KV, 1), vr.repeat_interleave(H // KV, 1)
    o = F.scaled_dot_product_attention(qr, kr, vr, attn_mask=mask)  # (R, H, nmax, D)
    out = o.transpose(1, 2)[q_ok]   # (L', H, D) in row order == packed order
    return out.transpose(0, 1)[None]  # (1, H, L, D)
q = torch.randn(1, H, L, D, requires_grad=True); k = torch.randn(1, KV, L, D, requires_grad=True); v = torch.randn(1, KV, L, D, requires_grad=True)
a = dense_attn(q, k, v); b = rows_attn(q, k, v)
print("L", L, "maxdiff", (a - b).abs().max().item(), "flat order ok", bool((flat_q == torch.arange(L)).all()))
g = torch.randn_like(a)
ga = torch.autograd.grad(a, [q, k, v], g); gb = torch.autograd.grad(b, [q, k, v], g)
print("grad diff", max((x - y).abs().max().item() for x, y in zip(ga, gb)))
def bench(f, n=30):
    for _ in range(3): torch.autograd.grad(f(q, k, v), [q, k, v], g)
    t = time.perf_counter()
    for _ in range(n): torch.autograd.grad(f(q, k, v), [q, k, v], g)
    return (time.perf_counter() - t) / n * 1000
print(f"dense {bench(dense_attn):.2f} ms fwd+bwd per layer, rows {bench(rows_attn):.2f} ms, dense again {bench(dense_attn):.2f}", flush=True)
