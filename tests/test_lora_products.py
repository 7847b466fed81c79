"""`lora_products` computes PEFT's LoRA layers, their output and every gradient, with other matmul layouts."""

import pytest
import torch
from helpers import PAD, tiny_model
from peft import LoraConfig, get_peft_model
from test_lean_loss import shared_prefix_examples

from sft_course import lora_products as products
from sft_course.collate import pad_batch
from sft_course.loss import adapter_context, loss_function, summed_token_loss
from sft_course.modeling import quiet_checkpointing_deprecation
from sft_course.run import TrainConfig


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(6, 20)
        self.down = torch.nn.Linear(20, 5, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def lora_net(seed: int = 0, **options):
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=options.pop("alpha", 7), target_modules=["up", "down"], **options)
    model = get_peft_model(Net(), config)
    for name, param in model.named_parameters():  # B starts at zero: give it values so every gradient flows
        if "lora_B" in name:
            param.data.normal_(0, 0.5)
    return model


def output_and_gradients(model, x, inside: bool):
    model.zero_grad()
    x = x.detach().clone().requires_grad_(x.requires_grad)
    if inside:
        with products.lora_products(model):
            out = model(x)
    else:
        out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).square().sum().backward()  # backward outside the context
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("x_needs_grad", [True, False])
@pytest.mark.parametrize("shape", [(7, 6), (2, 5, 6)])
def test_lora_products_give_pefts_output_and_gradients(shape, x_needs_grad, monkeypatch):
    model = lora_net()
    x = torch.randn(*shape, requires_grad=x_needs_grad)
    calls = []
    apply = products.LoraLinear.apply
    monkeypatch.setattr(products.LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    expected = output_and_gradients(model, x, inside=False)
    assert not calls
    got = output_and_gradients(model, x, inside=True)
    assert len(calls) == 2  # both layers, `up` with its bias
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)
    if x_needs_grad:
        torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-6)
    else:
        assert got[1] is None and expected[1] is None
    assert got[2].keys() == expected[2].keys() and len(got[2]) == 4  # A and B of both layers, nothing frozen
    for name in expected[2]:
        torch.testing.assert_close(got[2][name], expected[2][name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_context_restores_pefts_forward():
    model = lora_net()
    layers = [m for m in model.modules() if isinstance(m, products.PeftLoraLinear)]
    with products.lora_products(model):
        assert all("forward" in vars(layer) for layer in layers)
        with products.lora_products(model):  # nested: the inner context leaves the outer one's forward
            pass
        assert all("forward" in vars(layer) for layer in layers)
    assert layers and all("forward" not in vars(layer) for layer in layers)


@pytest.mark.parametrize("case", ["dropout", "merged", "disabled"])
def test_other_layers_keep_pefts_forward(case, monkeypatch):
    model = lora_net(lora_dropout=0.5 if case == "dropout" else 0.0)
    if case == "merged":
        model.merge_adapter()
    if case == "disabled":
        model.base_model.disable_adapter_layers()
    model.eval()  # dropout off, so the two forwards can be compared
    monkeypatch.setattr(products.LoraLinear, "apply", lambda *a: pytest.fail("LoraLinear ran on a layer it must not"))
    x = torch.randn(3, 6)
    with products.lora_products(model):
        inside = model(x)
    torch.testing.assert_close(inside, model(x))


def test_autocast_keeps_pefts_forward(monkeypatch):
    model = lora_net()
    monkeypatch.setattr(products.LoraLinear, "apply", lambda *a: pytest.fail("LoraLinear ran under autocast"))
    with torch.autocast("cpu", dtype=torch.bfloat16), products.lora_products(model):
        assert model(torch.randn(3, 6)).dtype == torch.bfloat16


def lora_tiny_model_and_batch():
    """A LoRA-wrapped tiny model (B filled in, so every gradient flows) in training mode, and a padded batch."""
    torch.manual_seed(0)
    with quiet_checkpointing_deprecation():
        model = get_peft_model(tiny_model(seed=3), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    return model.train(), pad_batch(shared_prefix_examples(5, 9, seed=2), PAD)


def assert_products_give_the_plain_gradient(config, monkeypatch):
    """`loss_function(model, config)` runs `LoraLinear` in every adapted layer and gives the plain loss's gradient."""
    model, batch = lora_tiny_model_and_batch()
    summed_token_loss(model, batch, logits_on_targets=True).backward()  # PEFT's own forward
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    calls = []
    apply = products.LoraLinear.apply
    monkeypatch.setattr(products.LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    loss_function(model, config)(batch).backward()
    assert len(calls) == 2 * 7  # every adapted linear layer of the two blocks
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_lean_loss_function_runs_lora_products_and_gives_the_plain_gradient(monkeypatch):
    assert_products_give_the_plain_gradient(TrainConfig(lean=True), monkeypatch)


def test_adapter_context_only_for_the_uncompiled_lean_loss():
    model = lora_net()
    assert adapter_context(model, TrainConfig()) is adapter_context(model, TrainConfig(lean=True, compile=True))
    with adapter_context(model, TrainConfig(lean=True))():
        assert any("forward" in vars(m) for m in model.modules())


def test_adapter_context_runs_lora_products_when_asked_without_the_lean_loss():
    model = lora_net()
    assert adapter_context(model, TrainConfig()) is adapter_context(
        model, TrainConfig(lora_products=True, compile=True)
    )
    with adapter_context(model, TrainConfig(lora_products=True))():
        assert any("forward" in vars(m) for m in model.modules())


def test_lora_products_without_the_lean_loss_gives_the_plain_gradient(monkeypatch):
    assert_products_give_the_plain_gradient(TrainConfig(lora_products=True), monkeypatch)
