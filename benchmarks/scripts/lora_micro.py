"""The LoRA layer (PEFT against `lora_products`), the output layer and the cross-entropy at SmolLM2-135M's shapes (260
tokens a step, 117 targets), forward and backward, best of 15. Usage: python benchmarks/scripts/lora_micro.py"""
import time, torch, torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from sft_course.lora_products import lora_products
torch.manual_seed(0)
def bench(f, n=15):
    for _ in range(3): f()
    best = 1e9
    for _ in range(n):
        t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
    return best * 1e3
# (a) LM head
for V in (49153, 49152):
    W = torch.randn(V, 576) * 0.02; x = torch.randn(117, 576); g = torch.randn(117, V)
    print(f"V={V}: linear {bench(lambda: F.linear(x, W)):.1f} ms, W@x.T {bench(lambda: W @ x.t()):.1f}, g@W {bench(lambda: g @ W):.1f}", flush=True)
# (c) CE
W = torch.randn(49153, 576) * 0.02; x = torch.randn(117, 576); t = torch.randint(0, 49153, (117,))
def ce_autograd():
    r = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(F.linear(r, W), t, reduction="sum"); return torch.autograd.grad(loss, [r])
def ce_manual():
    r = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = F.linear(r, W)
        lse = torch.logsumexp(logits.detach(), 1)
        loss = (lse - logits.detach().gather(1, t[:, None])[:, 0]).sum()
        grad = (logits.detach() - lse[:, None]).exp_()
        grad[torch.arange(len(t)), t] -= 1
        return loss, torch.autograd.grad(logits, [r], grad)
a = ce_autograd()[0]; l, b = ce_manual()
print("ce diff", (a - b[0]).abs().max().item())
print(f"CE autograd {bench(ce_autograd):.1f} ms, manual {bench(ce_manual):.1f} ms", flush=True)
# (b) LoRA layers
for (i, o) in ((576, 576), (576, 192), (576, 1536), (1536, 576)):
    class M(torch.nn.Module):
        def __init__(s): super().__init__(); s.lin = torch.nn.Linear(i, o, bias=False)
        def forward(s, x): return s.lin(x)
    p = get_peft_model(M(), LoraConfig(r=8, lora_alpha=16, target_modules=["lin"]))
    xx = torch.randn(1, 260, i, requires_grad=True); gg = torch.randn(1, 260, o)
    params = [q for q in p.parameters() if q.requires_grad]
    def peft_step():
        torch.autograd.grad(p(xx), [xx, *params], gg)
    def lp_step():
        with lora_products(p):
            y = p(xx)
        torch.autograd.grad(y, [xx, *params], gg)
    def base_only():
        torch.autograd.grad(F.linear(xx, p.base_model.model.lin.base_layer.weight), [xx], gg)
    print(f"{i}->{o}: peft {bench(peft_step):.2f} ms, lora_products {bench(lp_step):.2f}, base alone {bench(base_only):.2f}", flush=True)
