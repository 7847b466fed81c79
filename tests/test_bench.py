"""`sft-course bench`: a small run of the course loop against TRL's SFTTrainer, and the pieces it measures with."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sft_course.bench import BenchRun, PeakMemory, format_table, summarize, training_flops


def test_training_flops_counts_every_linear_layer_and_attention():
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    body = 4 * 8 * 8 + 3 * 8 * 16
    # 2 rows of width 5: 10 slots; the head on 3 of them
    expected = 3 * (2 * body * 10 + 2 * 8 * 50 * 3 + 1 * 4 * 5 * 8 * 10)
    assert training_flops(model, [(2, 5, 3)]) == expected


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB
        block += 1
        import time

        time.sleep(0.05)
    assert memory.peak_mb > 40


def run(name, seconds, tokens, accuracy):
    return BenchRun(
        name,
        seconds=seconds,
        first_step_seconds=1.0,
        target_tokens=tokens,
        first_step_target_tokens=10,
        computed_tokens=100,
        padding_tokens=10,
        flops=1e9,
        held_out_accuracy=accuracy,
    )


def test_the_ratio_uses_the_fastest_trl_configuration_of_equal_accuracy():
    runs = [run("course", 11.0, 2010, 0.90), run("trl", 21.0, 2010, 0.895), run("trl-grouped", 11.0, 2010, 0.40)]
    summary = summarize(runs, {"course": {}}, {"trl": {}, "trl-grouped": {}}, 1e10, {})
    # trl-grouped is as fast but 50 points less accurate: the reference is plain trl
    assert summary["trl_reference"] == "trl" and summary["trl_reference_reaches_equal_accuracy"]
    assert summary["throughput_ratio_vs_trl"] == pytest.approx(2.0)
    assert summary["configs"]["course"]["padding_share"] == pytest.approx(0.1)
    assert "| course |" in format_table(summary)


@pytest.mark.slow
def test_bench_command_prints_a_table_then_one_json_line(capsys):
    from sft_course.cli import main

    assert (
        main(
            [
                "bench",
                "--steps",
                "3",
                "--people",
                "20",
                "--eval-people",
                "3",
                "--batch-size",
                "8",
                "--warmup-steps",
                "1",
                "--course",
                "course,course-bf16",
                "--trl",
                "trl",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| config |")
    report = json.loads(lines[-1])
    assert report["steps"] == 3 and report["throughput_ratio_vs_trl"] > 0
    assert set(report["configs"]) == {"course", "course-bf16", "trl"}
    for metrics in report["configs"].values():
        assert 0 <= metrics["padding_share"] < 1 and 0 <= metrics["held_out_accuracy"] <= 1
        assert metrics["steady_tokens_per_second"] > 0 and 0 < metrics["fraction_of_matmul_flops"]
