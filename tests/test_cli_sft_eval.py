"""`sft-course sft` and `sft-course eval` end to end, on a tiny budget: the JSON contract of their last line."""

import json

import pytest

from sft_course import load_model
from sft_course.cli import main


def last_json_line(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def tuned_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tuned")


@pytest.mark.slow
def test_sft_prints_the_summary_and_saves_a_loadable_model(tuned_dir, capsys):
    assert (
        main(
            [
                "sft",
                "--method",
                "full",
                "--answers",
                "sentence",
                "--out",
                str(tuned_dir),
                "--people",
                "8",
                "--epochs",
                "1",
                "--eval-people",
                "4",
            ]
        )
        == 0
    )
    summary = last_json_line(capsys)
    for key in (
        "held_out_accuracy",
        "seen_accuracy",
        "train_seconds",
        "target_tokens_per_second",
        "trainable_params",
        "final_train_loss",
    ):
        assert key in summary, key
    assert summary["train_examples"] == 8 * 5 * 3
    assert 0 <= summary["held_out_accuracy"] <= 1
    model, tokenizer = load_model(tuned_dir, device="cpu")
    assert model.config.model_type == "llama" and tokenizer.pad_token == "<|pad|>"


@pytest.mark.slow
def test_eval_prints_the_metrics_as_one_json_line(tuned_dir, capsys):
    assert main(["eval", "--model", str(tuned_dir), "--eval-people", "4", "--no-json"]) == 0
    report = last_json_line(capsys)
    for key in ("completion_probe_accuracy", "held_out_accuracy", "seen_accuracy", "stop_rate", "perplexity"):
        assert key in report, key


@pytest.mark.slow
def test_base_model_knows_but_does_not_answer(capsys):
    """Issue 2's bar on a sample of 100 people per split: the probe >= 0.95, chat QA <= 0.05."""
    assert main(["eval", "--eval-people", "100", "--no-json"]) == 0
    report = last_json_line(capsys)
    assert {
        "seen_accuracy",
        "held_out_unseen_paraphrase_accuracy",
        "few_shot_held_out_accuracy",
        "stop_rate",
        "confident_wrong_rate",
        "ended_document_rate",
        "perplexity",
    } <= set(report)
    assert "json_format_compliance" not in report  # --no-json
    assert report["completion_probe_accuracy"] >= 0.95
    assert report["held_out_accuracy"] <= 0.05


def test_unknown_method_is_refused():
    with pytest.raises(SystemExit):
        main(["sft", "--method", "qlora", "--out", "x"])
