"""`sft-course bench --method lora`: the summary's ratios, the FLOP count of a LoRA step, the matmul peak."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from sft_course.bench_lora import (
    COURSE_LORA_CONFIGS,
    TRL_LORA_CONFIGS,
    LoraRun,
    default_configs,
    format_lora_table,
    summarize_lora,
    timed_rounds,
)
from sft_course.flops import lora_training_flops, matmul_peak, model_shapes
from sft_course.modeling import quiet_checkpointing_deprecation


def tiny_llama():
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def test_lora_flops_count_the_frozen_layers_the_adapters_the_head_and_attention():
    with quiet_checkpointing_deprecation():
        model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    body = 4 * 64 * 64 + 3 * 64 * 128  # q, k, v, o; gate, up, down
    adapters = 4 * (64 + 64) + 3 * (64 + 128)
    per_slot = 4 * body + 6 * 4 * adapters
    # 3 rows of width 10 with a shared prefix of 4: 4 + 3 * 6 slots; the head on 5 rows
    slots = 4 + 3 * 6
    expected = per_slot * slots + 12 * 64 * 10 * slots + 4 * 64 * 300 * 5
    assert lora_training_flops(model, [(3, 10, 5, 4)], rank=4) == expected
    # without adapters the frozen layers cost the same and nothing else is added
    assert lora_training_flops(tiny_llama(), [(3, 10, 5, 4)], rank=4) == expected - 6 * 4 * adapters * slots


def test_matmul_peak_at_the_models_shapes():
    shapes = model_shapes(tiny_llama(), rows=32)
    assert (32, 64, 128) in shapes and (32, 128, 64) in shapes and all(n != 300 for _, _, n in shapes)
    assert matmul_peak(torch.device("cpu"), torch.float32, shapes, repeats=2) > 1e6


def run(name, side, seconds, memory, eval_loss, precision="fp32"):
    return LoraRun(
        name,
        side,
        precision,
        seconds=seconds,
        target_tokens=1000,
        flops=1e10,
        peak_memory_mb=memory,
        eval_loss=eval_loss,
    )


def test_the_headline_is_the_fastest_course_config_over_the_fastest_trl_config_of_equal_eval_loss():
    runs = [
        run("course", "course", 10.0, 900, 1.00),
        run("course-lean", "course", 4.0, 300, 1.01),
        run("trl", "trl", 9.0, 800, 1.00),
        run("trl-checkpointing", "trl", 12.0, 400, 1.00),
        run("trl-odd", "trl", 2.0, 100, 2.00),  # fast but far off in eval loss: never the reference
    ]
    summary = summarize_lora(runs, {"fp32": 1e10, "bf16": 2e10}, {"model": "tiny"})
    assert summary["course_config"] == "course-lean" and summary["trl_reference"] == "trl"
    assert summary["throughput_ratio_vs_trl"] == pytest.approx(9.0 / 4.0, abs=1e-3)
    assert summary["peak_memory_ratio_vs_trl"] == pytest.approx(300 / 800, abs=1e-3)
    assert summary["configs"]["course"]["fraction_of_matmul_peak"] == pytest.approx(0.1)
    assert "| course-lean | fp32 |" in format_lora_table(summary)


def test_a_bf16_run_is_held_to_the_bf16_peak():
    runs = [run("course-lean-bf16", "course", 1.0, 1, 1.0, "bf16"), run("trl", "trl", 1.0, 1, 1.0)]
    summary = summarize_lora(runs, {"fp32": 1e10, "bf16": 4e10}, {})
    assert summary["configs"]["course-lean-bf16"]["fraction_of_matmul_peak"] == pytest.approx(0.25)
    assert summary["configs"]["trl"]["fraction_of_matmul_peak"] == pytest.approx(1.0)


def test_default_configs_leave_bf16_out_where_the_device_has_no_bf16_matmul(monkeypatch):
    import sft_course.bench_lora as bench_lora

    monkeypatch.setattr(bench_lora, "cpu_has_bf16", lambda: False)
    course, trl = default_configs(torch.device("cpu"))
    assert set(course) == {"course", "course-lean"} and set(trl) == {"trl"}
    monkeypatch.setattr(bench_lora, "cpu_has_bf16", lambda: True)
    course, trl = default_configs(torch.device("cpu"))
    assert "course-lean-bf16" in course and "trl-bf16" in trl
    assert set(course) <= set(COURSE_LORA_CONFIGS) and set(trl) <= set(TRL_LORA_CONFIGS)


def test_bench_lora_names_an_unknown_configuration_before_loading_anything(capsys):
    from sft_course.cli import main

    with pytest.raises(SystemExit, match="course-lean"):
        main(["bench", "--method", "lora", "--course", "nope"])


def test_generation_markers_are_added_to_chatml_only():
    from types import SimpleNamespace

    from sft_course.tokenizer import CHATML_MESSAGE, with_generation_markers

    marked = with_generation_markers(SimpleNamespace(chat_template="{% for message in messages %}" + CHATML_MESSAGE))
    assert "{% generation %}" in marked.chat_template and marked.chat_template.endswith("{% endif %}")
    kept = SimpleNamespace(chat_template="{% generation %}x{% endgeneration %}")
    assert with_generation_markers(kept) is kept
    with pytest.raises(ValueError, match="generation"):
        with_generation_markers(SimpleNamespace(chat_template="{{ messages }}"))


def test_trl_gets_the_courses_tokens_in_the_courses_step_order():
    from sft_course.bench_lora import trl_rows_in_step_order
    from sft_course.run import TrainConfig
    from sft_course.training import plan_steps, step_indices

    examples = [{"input_ids": [i, i + 1, i + 2], "labels": [-100, i + 1, i + 2]} for i in range(4)]
    config = TrainConfig(total_steps=3, batch_size=2, seed=7)  # 6 rows from 4 examples: the order wraps into epoch 2
    rows = trl_rows_in_step_order(examples, config)
    order = [i for _, step in step_indices(4, config, plan_steps(4, config)) for i in step]
    assert len(rows) == 6 and [r["input_ids"][0] for r in rows] == order
    assert order[:4] != [0, 1, 2, 3] and sorted(order[:4]) == [0, 1, 2, 3]  # the course's shuffle
    assert rows[0] == {"input_ids": examples[order[0]]["input_ids"], "labels": examples[order[0]]["labels"]}


def test_each_configuration_states_its_full_setting():
    from sft_course.bench_lora import config_settings

    settings = config_settings({"course-lean": {"micro_batch": None, "lean": True}}, {"trl-mb4": {"micro_batch": 4}}, 8)
    assert settings["course-lean"] == {
        "side": "course",
        "micro_batch": 8,
        "lean": True,
        "bf16": False,
        "compile": False,
        "gradient_checkpointing": False,
    }
    assert settings["trl-mb4"] == {
        "side": "trl",
        "micro_batch": 4,
        "padding_free": False,
        "bf16": False,
        "torch_compile": False,
        "gradient_checkpointing": False,
    }


@pytest.mark.parametrize("steps", [8, 40])
def test_trl_takes_each_step_at_the_courses_rate(steps):
    from types import SimpleNamespace

    from sft_course.bench_lora import use_course_schedule
    from sft_course.run import TrainConfig
    from sft_course.training import cosine_lr, plan_steps

    config = TrainConfig(lr=2e-4, total_steps=steps, batch_size=8)
    plan = plan_steps(steps * 8, config)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    trainer = SimpleNamespace(optimizer=optimizer, lr_scheduler=None)
    use_course_schedule(trainer, config)
    scheduler = trainer.create_scheduler(num_training_steps=steps)
    rates = []
    for _ in range(steps):  # Trainer reads the rate, steps the optimizer, then the scheduler
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [cosine_lr(s, steps, config.lr, plan.warmup_steps, config.min_lr_ratio) for s in range(steps)]
    assert rates == pytest.approx(expected, rel=1e-9) and trainer.lr_scheduler is scheduler


def test_the_lora_bench_json_line_leaves_out_the_options_it_does_not_read(monkeypatch, capsys):
    import json

    from sft_course import bench_lora, cli

    runs = [run("course-lean", "course", 1.0, 1, 1.0), run("trl", "trl", 2.0, 1, 1.0)]
    summary = summarize_lora(runs, {"fp32": 1e10, "bf16": 2e10}, {})
    monkeypatch.setattr(bench_lora, "run_lora_bench", lambda **kwargs: {"runs": [], "summary": summary})
    assert cli.main(["bench", "--method", "lora", "--steps", "2", "--course", "course-lean", "--trl", "trl"]) == 0
    options = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["options"]
    assert options["steps"] == 2 and options["method"] == "lora" and options["batch_size"] == 8
    assert not set(cli.LORA_BENCH_IGNORES) & set(options)


def test_the_fp32_peak_is_the_best_of_one_probe_after_each_round_of_runs():
    # A probe that lands in a slow moment of a shared machine must not set the yardstick: the best probe does.
    probes = iter([50.0, 150.0, 100.0])
    order = []

    def runner(name):
        def measured():
            order.append(name)
            return LoraRun(name=name, side="course", precision="fp32", seconds=1.0)

        return measured

    runners = {"a": runner("a"), "b": runner("b")}
    runs, peak, probed = timed_rounds(runners, ["a", "b"], 3, lambda: next(probes), progress=lambda _: None)
    assert order == ["a", "b"] * 3 and [r.name for r in runs] == order
    assert probed == [50.0, 150.0, 100.0] and peak == 150.0
