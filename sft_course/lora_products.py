"""PEFT's LoRA linear layers computed with the adapter's matrix products laid out the way a CPU's matmul is fast.

PEFT computes a LoRA layer as `base(x) + lora_B(lora_A(x)) * scaling`: the adapter adds two `nn.Linear` calls
forward and four small products backward, each with one side only r (the rank, 8) wide. MKL runs a product whose
result has r columns, such as the gradient of B, `grad^T @ (x A^T)`: (out x n) @ (n x r), at a tenth of the speed of
the same work laid out with r rows, `(A x^T) @ grad`: (r x n) @ (n x out) (benchmarks/README.md). `LoraLinear`
computes the same layer and the same gradients with every adapter product in the r-rows layout, the addition
and the scaling folded into the products (`addmm`): the same numbers up to float rounding.

`lora_products(model)` is the context in which a PEFT model's plain LoRA layers (one active adapter, no dropout,
no variant such as DoRA, not merged, a frozen `nn.Linear` base, float32 without autocast) run `LoraLinear`; any
other layer keeps PEFT's forward. Only the forward pass needs the context: the backward pass follows the graph.
The lean loss (`lean_loss`) runs its decoder pass in it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from peft.tuners.lora import Linear as PeftLoraLinear


class LoraLinear(torch.autograd.Function):
    """`x @ weight^T + bias + scaling * (x @ a^T) @ b^T`, the frozen `weight` and `bias` without gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling):
        flat = x.reshape(-1, x.shape[-1])
        h_t = a @ flat.t()  # (r, n): the adapter's hidden values with r rows
        out = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())
        out.addmm_(h_t.t(), b.t(), alpha=scaling)
        ctx.save_for_backward(flat, weight, a, b, h_t)
        ctx.scaling, ctx.x_shape = scaling, x.shape
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        flat, weight, a, b, h_t = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1])
        grad_h_t = torch.mm(b.t(), grad.t()).mul_(ctx.scaling)  # (r, n)
        grad_b = torch.mm(h_t, grad).mul_(ctx.scaling).t().contiguous()  # (r, out) computed, stored (out, r)
        grad_a = torch.mm(grad_h_t, flat)  # (r, in)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad, weight).addmm_(grad_h_t.t(), a).view(ctx.x_shape)
        return grad_x, None, None, grad_a, grad_b, None


def _plain_adapter(layer: PeftLoraLinear, x: torch.Tensor) -> str | None:
    """The name of `layer`'s one active adapter when `LoraLinear` computes exactly what PEFT's forward would, else
    None."""
    adapters = layer.active_adapters
    if layer.disable_adapters or layer.merged or len(adapters) != 1 or adapters[0] not in layer.lora_A:
        return None
    name, base = adapters[0], layer.get_base_layer()
    frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
    plain = (
        name not in layer.lora_variant
        and isinstance(layer.lora_dropout[name], torch.nn.Identity)
        and type(base) is torch.nn.Linear
        and frozen
        and x.dtype == base.weight.dtype == layer.lora_A[name].weight.dtype == torch.float32
        and not torch.is_autocast_enabled(x.device.type)
    )
    return name if plain else None


def _forward(layer: PeftLoraLinear, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = None if args or kwargs else _plain_adapter(layer, x)
    if name is None:
        return PeftLoraLinear.forward(layer, x, *args, **kwargs)
    base = layer.get_base_layer()
    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
    return LoraLinear.apply(x, base.weight, base.bias, a, b, layer.scaling[name])


@contextmanager
def lora_products(model):
    """Inside, every PEFT LoRA linear layer of `model` computes its plain adapter with `LoraLinear`."""
    layers = [m for m in model.modules() if isinstance(m, PeftLoraLinear) and "forward" not in vars(m)]
    for layer in layers:
        layer.forward = _forward.__get__(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
