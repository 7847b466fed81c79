"""The bundled tokenizer and base model: special tokens, chat template, loading, and the probe figures."""

from pathlib import Path

import pytest
import torch

from sft_course import BUNDLED_MODEL_DIR, load_model
from sft_course.probes import teacher_forced_probe
from sft_course.tokenizer import END_OF_TEXT, IM_END, IM_START, PAD, known_token_id
from sft_course.world import make_world

MESSAGES = [{"role": "user", "content": "Where was Yuri Blackwood born?"},
            {"role": "assistant", "content": "Yuri Blackwood was born in Tampa."}]


@pytest.fixture(scope="module")
def bundled():
    return load_model(device="cpu")


def test_special_tokens_and_pad_is_not_eos(bundled):
    _, tok = bundled
    assert tok.eos_token == END_OF_TEXT and tok.pad_token == PAD
    assert tok.pad_token_id != tok.eos_token_id
    ids = {tok.convert_tokens_to_ids(t) for t in (END_OF_TEXT, IM_START, IM_END, PAD)}
    assert len(ids) == 4 and tok.unk_token_id not in ids


def test_chat_template_renders_chatml_with_generation_prompt(bundled):
    _, tok = bundled
    text = tok.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhere was Yuri Blackwood born?<|im_end|>\n<|im_start|>assistant\n"
    full = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert full == text + "Yuri Blackwood was born in Tampa.<|im_end|>\n"


def test_chat_template_marks_assistant_tokens(bundled):
    _, tok = bundled
    out = tok.apply_chat_template(MESSAGES, return_dict=True, return_assistant_tokens_mask=True)
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(marked) == "Yuri Blackwood was born in Tampa." + IM_END


def test_byte_level_round_trips_korean_without_unknown_tokens(bundled):
    _, tok = bundled
    text = "세상에서 가장 높은 산은 무엇인가요?"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None or tok.unk_token_id not in ids
    assert len(ids) > len(tok("What is the highest mountain in the world?").input_ids)


def test_load_model_default_is_the_bundled_folder(bundled):
    model, _ = bundled
    assert model.config.model_type == "llama"
    assert model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_load_model_takes_a_local_path_unchanged(tmp_path, bundled):
    model, tok = bundled
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_model(tmp_path, device="cpu")
    ids = torch.tensor([tok("Yuri Blackwood was born in").input_ids])
    assert torch.allclose(model(ids).logits, again(ids).logits)
    assert len(tok2) == len(tok)


def test_load_model_reports_a_missing_path(tmp_path):
    with pytest.raises(OSError):
        load_model(tmp_path / "nothing-here", device="cpu")


def test_bundled_model_stays_under_25_mb():
    size = sum(f.stat().st_size for f in Path(BUNDLED_MODEL_DIR).iterdir() if f.is_file())
    assert size < 25 * 2**20


@pytest.mark.slow
def test_model_card_states_what_the_model_does(bundled):
    """The card's completion-probe figure is what the bundled model scores now, over all 1000 people.

    Measured with the teacher-forced probe (one forward pass per attribute), which equals the greedy
    completion probe whenever greedy decoding picks the fact's own tokenization.
    """
    model, tok = bundled
    card = (Path(BUNDLED_MODEL_DIR) / "MODEL_CARD.md").read_text()
    probe = float(card.split("completion probe, greedy")[1].split("**")[1])
    qa = float(card.split("chat QA on held-out people")[1].split("**")[1])
    assert probe == pytest.approx(teacher_forced_probe(model, tok, list(make_world().people)), abs=0.0015)
    assert probe >= 0.95 and qa <= 0.05


def test_known_token_id_tells_a_token_of_its_own_from_an_unknown_one(bundled):
    _, tok = bundled
    assert known_token_id(tok, IM_END) == tok.convert_tokens_to_ids(IM_END)
    assert known_token_id(tok, "<|no-such-token|>") is None
