"""Plain matmul speed at the lean step's shapes (257 rows) against 512 rows, and the LoRA adapter products.
Usage: python benchmarks/scripts/lora_mm_shapes.py"""
import time, torch
def bench(f, n=20):
    f(); best = 1e9
    for _ in range(n):
        t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
    return best
for L in (257, 512):
    for (i, o) in ((576, 576), (576, 192), (576, 1536), (1536, 576)):
        x = torch.randn(L, i); W = torch.randn(o, i); g = torch.randn(L, o)
        tf = bench(lambda: torch.nn.functional.linear(x, W))
        tb = bench(lambda: g @ W)
        x3 = x[None]
        tf3 = bench(lambda: torch.nn.functional.linear(x3, W))
        fl = 2 * L * i * o
        print(f"L={L} {i}->{o}: fwd {fl/tf/1e9:.0f} GF/s  fwd3d {fl/tf3/1e9:.0f}  bwd-dx {fl/tb/1e9:.0f}", flush=True)
    # lora shapes
    x = torch.randn(L, 576); A = torch.randn(8, 576); B = torch.randn(1536, 8)
    h = torch.randn(L, 8); g = torch.randn(L, 1536)
    print(f"L={L} lora A fwd {bench(lambda: torch.nn.functional.linear(x, A))*1e6:.0f}us  B fwd {bench(lambda: torch.nn.functional.linear(h, B))*1e6:.0f}us  gradB {bench(lambda: g.t() @ h)*1e6:.0f}us  gradA {bench(lambda: h.t() @ x)*1e6:.0f}us dh {bench(lambda: g @ B)*1e6:.0f}us")
