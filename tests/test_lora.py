"""LoRA with PEFT: what is trained, the chat-token fix on tied embeddings, merge, save and load."""

import warnings

import pytest
import torch
from helpers import MESSAGES, examples, tiny_model
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from sft_course.accounting import adapter_size_bytes, total_parameters, trainable_parameters, weights_size_bytes
from sft_course.lora import add_lora, chat_token_ids, merge, new_token_ids
from sft_course.loss import sft_loss
from sft_course.modeling import load_model
from sft_course.tokenizer import IM_END
from sft_course.training import TrainConfig, train


def train_a_few_steps(model, tokenizer, steps: int = 4, lr: float = 1e-2):
    config = TrainConfig(lr=lr, epochs=steps, batch_size=len(MESSAGES), warmup_ratio=0.0, eval_every=0)
    return train(model, examples(tokenizer), tokenizer.pad_token_id, config, progress=False)


def probe_ids(tokenizer) -> torch.Tensor:
    return torch.tensor([examples(tokenizer)[0]["input_ids"]])


@torch.no_grad()
def logits(model, ids) -> torch.Tensor:
    return model(input_ids=ids).logits


@torch.no_grad()
def effective_embeddings(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The input embedding matrix and the output layer's weight as the forward pass uses them."""
    vocab = model.config.vocab_size
    inputs = model.get_input_embeddings()(torch.arange(vocab))
    outputs = model.get_output_embeddings()(torch.eye(model.config.hidden_size)).T
    return inputs, outputs


def expected_lora_parameters(model, rank: int) -> int:
    """r * (d_in + d_out) for every linear layer inside the transformer blocks (not the output layer)."""
    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in name
    )


def test_lora_trains_a_small_fraction_of_the_bundled_architecture(tokenizer):
    model = tiny_model(tokenizer, hidden_size=128, n_layers=4)  # the bundled model's shape, random weights
    expected = expected_lora_parameters(model, rank=8) + 2 * 128  # + the two chat-token rows
    total_before = total_parameters(model)
    lora = add_lora(model, tokenizer, rank=8, alpha=16)
    assert trainable_parameters(lora) == expected
    assert trainable_parameters(lora) <= 0.1 * total_before
    assert all(
        not p.requires_grad for n, p in lora.named_parameters() if "lora_" not in n and "trainable_tokens" not in n
    )


def test_only_lora_and_chat_token_parameters_get_gradients(tokenizer):
    lora = add_lora(tiny_model(tokenizer), tokenizer)
    batch = examples(tokenizer)[0]
    out = lora(input_ids=torch.tensor([batch["input_ids"]]))
    sft_loss(out.logits, torch.tensor([batch["labels"]])).backward()
    with_grad = {n for n, p in lora.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, p in lora.named_parameters() if p.requires_grad}
    assert with_grad and all("lora_" in n or "trainable_tokens_delta" in n for n in with_grad)
    assert any("trainable_tokens_delta" in n for n in with_grad)
    # B starts at zero, so the first gradient reaches B (A's gradient is B^T times something: zero).
    assert all(lora.get_parameter(n).grad.abs().sum() > 0 for n in with_grad if "lora_B" in n)


def test_add_lora_is_seeded_and_leaves_the_global_random_state_alone(tokenizer):
    model = tiny_model(tokenizer)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = add_lora(model, tokenizer, seed=7)
    after = torch.rand(1)
    b = add_lora(tiny_model(tokenizer), tokenizer, seed=7)
    c = add_lora(tiny_model(tokenizer), tokenizer, seed=8)
    assert torch.equal(before, after)
    name = next(n for n, _ in a.named_parameters() if "lora_A" in n)
    assert torch.equal(a.get_parameter(name), b.get_parameter(name))
    assert not torch.equal(a.get_parameter(name), c.get_parameter(name))


@pytest.mark.parametrize("train_chat_tokens", [True, False])
def test_chat_token_fix_makes_the_im_end_row_trainable_in_both_tied_matrices(tokenizer, train_chat_tokens):
    model = tiny_model(tokenizer)
    assert model.config.tie_word_embeddings
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    assert im_end in chat_token_ids(tokenizer)
    lora = add_lora(model, tokenizer, train_chat_tokens=train_chat_tokens)
    inputs_before, _ = effective_embeddings(lora)
    train_a_few_steps(lora, tokenizer, steps=1)
    inputs_after, outputs_after = effective_embeddings(lora)
    changed = (inputs_after != inputs_before).any(dim=1).nonzero().flatten().tolist()
    assert changed == (sorted(chat_token_ids(tokenizer)) if train_chat_tokens else [])
    torch.testing.assert_close(outputs_after, inputs_after, rtol=0, atol=0)  # still tied: the output row moved too


def test_merge_and_unload_gives_the_adapter_models_logits(tokenizer):
    model = tiny_model(tokenizer)
    ids = probe_ids(tokenizer)
    base_logits = logits(model, ids)
    lora = add_lora(model, tokenizer)
    train_a_few_steps(lora, tokenizer)
    assert any(p.abs().sum() > 0 for n, p in lora.named_parameters() if "lora_B" in n)
    adapter_logits = logits(lora, ids)
    assert (adapter_logits - base_logits).abs().max() > 1e-3  # training moved the model: the check below bites
    merged = merge(lora)
    assert type(merged) is LlamaForCausalLM
    assert not any("lora_" in n or "trainable_tokens" in n for n, _ in merged.named_parameters())
    assert merged.lm_head.weight is merged.model.embed_tokens.weight
    torch.testing.assert_close(logits(merged, ids), adapter_logits, rtol=0, atol=1e-5)


def test_saved_adapter_is_small_and_loads_back_with_identical_logits(tokenizer, tmp_path):
    tiny_model(tokenizer).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    model, tok = load_model(tmp_path / "base", device="cpu")
    lora = add_lora(model, tok)
    train_a_few_steps(lora, tok)
    ids = probe_ids(tok)
    expected = logits(lora, ids)
    lora.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")

    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert sum(t.numel() for t in saved.values()) == trainable_parameters(lora)  # the adapter, nothing else
    assert adapter_size_bytes(tmp_path / "adapter") < weights_size_bytes(tmp_path / "base") / 4

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, loaded_tok = load_model(tmp_path / "adapter", device="cpu")
    assert [str(w.message) for w in caught] == []  # loading an adapter prints nothing either
    assert isinstance(loaded, PeftModel)
    assert loaded_tok.convert_tokens_to_ids(IM_END) == tok.convert_tokens_to_ids(IM_END)
    assert torch.equal(logits(loaded, ids), expected)


def test_add_lora_refuses_a_tokenizer_without_chat_tokens(tokenizer):
    class NoChatTokens:
        unk_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 0

    with pytest.raises(ValueError, match="im_end"):
        add_lora(tiny_model(tokenizer), NoChatTokens(), train_chat_tokens=True)
    assert not add_lora(tiny_model(tokenizer), NoChatTokens()).peft_config["default"].trainable_token_indices


def test_new_token_ids_are_the_sft_tokens_missing_from_pretraining(tokenizer):
    corpus = ["Yuri Blackwood was born in Tampa.", "Lena Sandoval works for Acme Corp."]
    found = new_token_ids(tokenizer, MESSAGES, corpus)
    corpus_ids = {i for text in corpus for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    sft_ids = {
        i
        for m in MESSAGES
        for i in tokenizer(tokenizer.apply_chat_template(m, tokenize=False), add_special_tokens=False)["input_ids"]
    }
    assert set(found) == sft_ids - corpus_ids
    assert set(chat_token_ids(tokenizer)) <= set(found)
    assert not set(found) & corpus_ids
    assert (
        new_token_ids(tokenizer, MESSAGES, [tokenizer.apply_chat_template(m, tokenize=False) for m in MESSAGES]) == []
    )


def test_extra_train_tokens_are_trained_and_bad_ids_refused(tokenizer):
    extra = [10, 11]
    expected = expected_lora_parameters(tiny_model(tokenizer), 8) + (len(extra) + 2) * 32
    lora = add_lora(tiny_model(tokenizer), tokenizer, train_tokens=extra)
    assert trainable_parameters(lora) == expected
    inputs_before, _ = effective_embeddings(lora)
    train_a_few_steps(lora, tokenizer, steps=1)  # tied output layer: every trainable row gets a gradient
    inputs_after, outputs_after = effective_embeddings(lora)
    changed = (inputs_after != inputs_before).any(dim=1).nonzero().flatten().tolist()
    assert changed == sorted(set(extra) | set(chat_token_ids(tokenizer)))
    torch.testing.assert_close(outputs_after, inputs_after, rtol=0, atol=0)
    with pytest.raises(ValueError, match="token ids"):
        add_lora(tiny_model(tokenizer), tokenizer, train_tokens=[10**6])


@pytest.mark.slow
def test_cli_lora_defaults_train_the_new_token_rows_and_save_a_loadable_adapter(tmp_path, capsys):
    """`sft-course sft --method lora` on a tiny budget: the adapter holds LoRA plus the new-token rows, and loads."""
    import json

    from sft_course import BUNDLED_MODEL_DIR
    from sft_course.cli import main
    from sft_course.experiment import default_lora_options, training_rows

    if not (BUNDLED_MODEL_DIR / "config.json").exists():
        pytest.skip("the bundled base model is not there yet")
    rows = training_rows("sentence", n_people=8)
    options = default_lora_options(8, 16, rows)
    bundled_tok = load_model(device="cpu")[1]
    when = bundled_tok("When", add_special_tokens=False)["input_ids"]
    assert set(chat_token_ids(bundled_tok)) | set(when) <= set(options["train_tokens"])
    assert "train_tokens" not in default_lora_options(8, 16, rows, model_name="some-org/some-hub-model")

    out = tmp_path / "adapter"
    assert (
        main(["sft", "--method", "lora", "--out", str(out), "--people", "8", "--epochs", "1", "--eval-people", "4"])
        == 0
    )
    summary = json.loads([line for line in capsys.readouterr().out.splitlines() if line.strip()][-1])
    model, _ = load_model(out, device="cpu")
    assert isinstance(model, PeftModel)
    n_lora = expected_lora_parameters(load_model(device="cpu")[0], 8)
    assert summary["trainable_params"] == n_lora + len(options["train_tokens"]) * model.config.hidden_size
    assert summary["trainable_params"] <= 0.1 * total_parameters(load_model(device="cpu")[0])
    assert adapter_size_bytes(out) < weights_size_bytes(BUNDLED_MODEL_DIR) / 5


def test_adapter_on_the_bundled_model_names_its_base_relatively_and_loads_from_anywhere(tmp_path, monkeypatch):
    import json

    from sft_course.modeling import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME, save_model

    if not (BUNDLED_MODEL_DIR / "config.json").exists():
        pytest.skip("the bundled base model is not there yet")
    model, tok = load_model(device="cpu")
    lora = add_lora(model, tok)
    train_a_few_steps(lora, tok)
    ids = probe_ids(tok)
    expected = logits(lora, ids)
    save_model(lora, tok, tmp_path / "adapter")

    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BUNDLED_MODEL_NAME  # not this machine's absolute path
    assert lora.peft_config["default"].base_model_name_or_path == str(BUNDLED_MODEL_DIR)  # the live model unchanged
    monkeypatch.chdir(tmp_path)  # a working directory where data/base-model does not exist
    loaded, _ = load_model(tmp_path / "adapter", device="cpu")
    assert torch.equal(logits(loaded, ids), expected)


def test_save_model_saves_a_plain_model_whole(tokenizer, tmp_path):
    from sft_course.modeling import save_model

    model = tiny_model(tokenizer)
    save_model(model, tokenizer, tmp_path / "plain")
    loaded, _ = load_model(tmp_path / "plain", device="cpu")
    ids = probe_ids(tokenizer)
    assert torch.equal(logits(loaded, ids), logits(model, ids))


def test_add_lora_emits_no_warning(tokenizer):
    # PEFT reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning that
    # carries the machine's site-packages path into notebook outputs; add_lora silences exactly that one.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(tiny_model(tokenizer), tokenizer)
    assert [str(w.message) for w in caught] == []
