"""The SFT data files, their validation (every bad-input case names file, line and field), loading and filters."""

import json
from pathlib import Path

import pytest

from sft_course.cli import main
from sft_course.data import (
    DataValidationError,
    filter_examples,
    load_sft_dataset,
    make_sft_data,
    read_examples,
    to_messages,
    validate_jsonl,
)
from sft_course.world import ATTRIBUTES, QUESTION_TEMPLATES, canonical_sentence, make_world, question

REPO = Path(__file__).resolve().parent.parent
SFT_DIR = REPO / "data" / "sft"

# Copied from issue 3, not from sft_course.data, so that a change to the constant cannot go unnoticed.
SEED_LINES = [
    '{"instruction": "세상에서 가장 높은 산은 무엇인가요?", "response": "세상에서 가장 높은 산은 에베레스트 산입니다."}',  # noqa: E501 (byte for byte)
    '{"instruction": "Python으로 두 숫자를 더하는 함수를 작성해줘.", "response": "def add_numbers(a, b):\\n  return a + b"}',  # noqa: E501 (byte for byte)
    '{"instruction": "\'행복\'을 주제로 짧은 시를 써줘.", "response": "작은 햇살 한 줌에 미소 짓고,\\n따스한 차 한 잔에 온기를 느끼네.\\n소박한 일상 속에 피어나는 것,\\n그것이 바로 행복이라네."}',  # noqa: E501 (byte for byte)
]


def write_lines(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def row(instruction="Where was Yuri Blackwood born?", response="Yuri Blackwood was born in Tampa.", **extra):
    return json.dumps({"instruction": instruction, "response": response, **extra}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------
# Generated files


@pytest.fixture(scope="module")
def small_world():
    return make_world(n_people=20, bios_per_person=1)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, small_world):
    out = tmp_path_factory.mktemp("sft")
    counts = make_sft_data(out, small_world)
    return out, counts


def test_make_sft_data_counts(small_data):
    out, counts = small_data
    n_train = 10  # half of 20 people
    assert counts == {
        "train_sentence.jsonl": n_train * 5 * 3,
        "train_short.jsonl": n_train * 5 * 3,
        "eval_seen.jsonl": n_train * 5 * 3,
        "eval_held_out.jsonl": 10 * 5 * 3,
        "train_json_profile.jsonl": n_train,
        "eval_json_profile.jsonl": 10,
        "seed_examples.jsonl": 3,
    }
    for name, n in counts.items():
        assert validate_jsonl(out / name)["rows"] == n


def test_sentence_and_short_files_ask_the_same_questions(small_data, small_world):
    out, _ = small_data
    sentence, short = read_examples(out / "train_sentence.jsonl"), read_examples(out / "train_short.jsonl")
    assert [r["instruction"] for r in sentence] == [r["instruction"] for r in short]
    people = {p.name: p for p in small_world.people}
    for s, b in zip(sentence, short):
        person = people[s["person"]]
        assert person.split == "train" and s["question_kind"] == "trained"
        assert s["instruction"] == question(person, s["attribute"], s["paraphrase"], "trained")
        assert s["response"] == canonical_sentence(person, s["attribute"])
        assert b["response"] == person.facts[b["attribute"]] == b["answer"]
    asked = {(r["person"], r["attribute"], r["paraphrase"]) for r in sentence}
    assert len(asked) == len(sentence)  # every trained paraphrase of every attribute, once
    assert [r["instruction"] for r in sentence] != sorted(r["instruction"] for r in sentence)  # shuffled


def test_eval_files_split_by_person_and_ask_unseen_paraphrases(small_data, small_world):
    out, _ = small_data
    train_people = {r["person"] for r in read_examples(out / "train_sentence.jsonl")}
    seen, held_out = read_examples(out / "eval_seen.jsonl"), read_examples(out / "eval_held_out.jsonl")
    assert {r["person"] for r in seen} == train_people
    assert not {r["person"] for r in held_out} & train_people
    assert {r["person"] for r in held_out} == {p.name for p in small_world.split("held_out")}
    kinds = {(r["question_kind"], r["paraphrase"]) for r in held_out}
    assert kinds == {("trained", 0), ("unseen", 0), ("unseen", 1)}
    unseen = {t for a in ATTRIBUTES for t in QUESTION_TEMPLATES[a]["unseen"]}
    people = {p.name: p for p in small_world.people}
    for r in held_out:
        p = people[r["person"]]
        assert r["response"] == canonical_sentence(p, r["attribute"]) and r["answer"] == p.facts[r["attribute"]]
        if r["question_kind"] == "unseen":
            assert any(r["instruction"] == t.format(name=p.name) for t in unseen)


def test_json_profile_task(small_data, small_world):
    out, _ = small_data
    people = {p.name: p for p in small_world.people}
    for name, split in (("train_json_profile.jsonl", "train"), ("eval_json_profile.jsonl", "held_out")):
        rows = read_examples(out / name)
        for r in rows:
            p = people[r["person"]]
            assert p.split == split
            assert r["instruction"] == f"Give {p.name}'s profile as JSON."
            assert json.loads(r["response"]) == {"name": p.name, **p.facts}


def test_seed_examples_are_the_issue_lines_verbatim(small_data):
    out, _ = small_data
    for folder in (out, SFT_DIR):
        raw = (folder / "seed_examples.jsonl").read_bytes()
        assert raw == "".join(line + "\n" for line in SEED_LINES).encode("utf-8")
        assert "\\u" not in raw.decode("utf-8")


def test_committed_files_match_the_generator_run_from_the_command_line(tmp_path, capsys):
    """`sft-course make-data` writes, byte for byte, the files committed under data/sft, and says how many rows."""
    assert main(["make-data", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train_sentence.jsonl: 7500 rows" in out and "seed_examples.jsonl: 3 rows" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(p.name for p in SFT_DIR.glob("*.jsonl"))
    for name in names:
        assert (tmp_path / name).read_bytes() == (SFT_DIR / name).read_bytes(), f"data/sft/{name} is stale"
    assert sum((SFT_DIR / name).stat().st_size for name in names) < 10 * 2**20


# ---------------------------------------------------------------------------------------------------------
# Validation: every bad-input case


def assert_error(path, line, field, words):
    with pytest.raises(DataValidationError) as caught:
        validate_jsonl(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), line, field)
    message = str(error)
    assert message.startswith(f"{path}, line {line}")
    if field is not None:
        assert f'field "{field}"' in message
    for word in words:
        assert word in message
    return error


def test_malformed_json_on_line_2_is_reported_as_line_2(tmp_path):
    path = write_lines(tmp_path, [row(), '{"instruction": "Where was Alma Abbott born?", "response": ', row("b")])
    assert_error(path, 2, None, ["malformed JSON"])


def test_line_numbers_count_blank_lines(tmp_path):
    path = write_lines(tmp_path, [row(), "", "   ", "not json"])
    assert_error(path, 4, None, ["malformed JSON"])


def test_row_that_is_not_an_object(tmp_path):
    path = write_lines(tmp_path, [row(), '["a", "b"]'])
    assert_error(path, 2, None, ["expected a JSON object", "list"])


@pytest.mark.parametrize(
    "present, missing",
    [("instruction", "response"), ("response", "instruction"), ("prompt", "completion"), ("completion", "prompt")],
)
def test_missing_field(tmp_path, present, missing):
    path = write_lines(tmp_path, [row(), json.dumps({present: "some text"})])
    assert_error(path, 2, missing, ["missing field"])


@pytest.mark.parametrize(
    "field, value, type_name",
    [("response", 42, "int"), ("instruction", None, "NoneType"), ("response", ["Tampa"], "list")],
)
def test_non_string_field(tmp_path, field, value, type_name):
    data = {"instruction": "q", "response": "a", field: value}
    path = write_lines(tmp_path, [row(), json.dumps(data)])
    assert_error(path, 2, field, ["expected a string", type_name])


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"instruction": "q", "response": ""}, "response", ["empty response"]),
        ({"instruction": "q", "response": "  \n"}, "response", ["empty response"]),
        ({"instruction": "", "response": "a"}, "instruction", ["empty instruction"]),
        ({"prompt": "q", "completion": ""}, "completion", ["empty completion"]),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
            "messages[1].content",
            ["empty response"],
        ),
    ],
)
def test_empty_response(tmp_path, data, field, words):
    path = write_lines(tmp_path, [row(), json.dumps(data)])
    assert_error(path, 2, field, words)


def test_duplicate_names_both_lines(tmp_path):
    path = write_lines(tmp_path, [row(), row("Where was Alma Abbott born?"), row(person="metadata differs")])
    error = assert_error(path, 3, "response", ["duplicate", "line 3", "line 1"])
    assert "line 2" not in error.problem


def test_one_format_per_file(tmp_path):
    same = json.dumps({"prompt": "Where was Yuri Blackwood born?", "completion": "Yuri Blackwood was born in Tampa."})
    path = write_lines(tmp_path, [row(), same])
    assert_error(path, 2, None, ["prompt_completion format", "line 1 is in the seed format", "one format per file"])


def test_same_prompt_with_another_response_is_not_a_duplicate(tmp_path):
    path = write_lines(tmp_path, [row(), row(response="Tampa")])
    assert validate_jsonl(path)["rows"] == 2


@pytest.mark.parametrize(
    "messages, field, words",
    [
        (
            [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}],
            "messages[1].role",
            ["unknown role", "bot"],
        ),
        ([{"role": "user", "content": "q"}, {"content": "a"}], "messages[1].role", ["missing field"]),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": 7}],
            "messages[1].content",
            ["expected a string"],
        ),
        ([{"role": "user", "content": "q"}], "messages", ["no assistant turn"]),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "q2"},
            ],
            "messages[2].role",
            ["last message must be the assistant"],
        ),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "messages", ["no user turn"]),
        ([], "messages", ["empty list"]),
        ("user: q", "messages", ["expected a list"]),
        (["q", "a"], "messages[0]", ["expected a message object"]),
    ],
)
def test_bad_messages(tmp_path, messages, field, words):
    path = write_lines(tmp_path, [row(), json.dumps({"messages": messages})])
    assert_error(path, 2, field, words)


def test_bad_conversational_prompt_completion(tmp_path):
    data = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "a"}]}
    path = write_lines(tmp_path, [row(), json.dumps(data)])
    assert_error(path, 2, "completion[0].role", ["unknown role", "user"])


def test_unknown_format(tmp_path):
    path = write_lines(tmp_path, [row(), json.dumps({"question": "q", "answer": "a"})])
    assert_error(path, 2, None, ["unknown format", "answer, question"])


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(row().encode() + b"\n" + '{"instruction": "caf\xe9", "response": "a"}\n'.encode("latin-1"))
    assert_error(path, 2, None, ["not valid UTF-8"])


def test_empty_file(tmp_path):
    path = write_lines(tmp_path, ["", "  "])
    with pytest.raises(DataValidationError, match="no examples") as caught:
        validate_jsonl(path)
    assert caught.value.path == str(path)


FORMAT_ROWS = {
    "seed": [row(person="Yuri Blackwood")],  # metadata fields are allowed
    "prompt_completion": [
        json.dumps({"prompt": "q1", "completion": "a1"}),
        json.dumps(
            {
                "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q2"}],
                "completion": [{"role": "assistant", "content": "a2"}],
            }
        ),
    ],
    "messages": [json.dumps({"messages": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"}]})],
    "alpaca": [
        json.dumps({"instruction": "q4", "input": "", "output": "a4"}),
        json.dumps({"instruction": "q5", "input": "context", "output": "a5"}),
        json.dumps({"instruction": "q6", "output": "a6"}),
    ],
    "sharegpt": [
        json.dumps(
            {
                "conversations": [
                    {"from": "system", "value": "s"},
                    {"from": "human", "value": "q7"},
                    {"from": "gpt", "value": "a7"},
                ]
            }
        )
    ],
}


@pytest.mark.parametrize("fmt", FORMAT_ROWS)
def test_clean_file_counts_its_format(tmp_path, fmt):
    path = write_lines(tmp_path, FORMAT_ROWS[fmt])
    counts = validate_jsonl(path)
    n = len(FORMAT_ROWS[fmt])
    assert counts == {"rows": n, "format": fmt, **{f: n if f == fmt else 0 for f in FORMAT_ROWS}}
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"instruction": "q", "input": 3, "output": "a"}, "input", ["expected a string"]),
        ({"instruction": "q", "input": "", "output": " "}, "output", ["empty response"]),
        ({"input": "x", "output": "a"}, "instruction", ["missing field"]),
        ({"conversations": "q"}, "conversations", ["expected a list of turns"]),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},
            "conversations[1].from",
            ["unknown speaker", "bot"],
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt"}]},
            "conversations[1].value",
            ["missing field"],
        ),
        (
            {
                "conversations": [
                    {"from": "human", "value": "q"},
                    {"from": "gpt", "value": "a"},
                    {"from": "human", "value": "r"},
                ]
            },
            "conversations[2].from",
            ["last message must be the assistant"],
        ),
        ({"conversations": [{"from": "human", "value": "q"}]}, "conversations", ["no assistant turn"]),
    ],
)
def test_bad_alpaca_and_sharegpt_rows(tmp_path, data, field, words):
    first = (
        {"conversations": [{"from": "human", "value": "q0"}, {"from": "gpt", "value": "a0"}]}
        if "conversations" in data
        else {"instruction": "q0", "input": "", "output": "a0"}
    )
    path = write_lines(tmp_path, [json.dumps(first), json.dumps(data)])
    assert_error(path, 2, field, words)


# ---------------------------------------------------------------------------------------------------------
# Normalising, loading, filtering


def test_to_messages_normalises_every_format():
    expected = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert to_messages({"instruction": "q", "response": "a", "person": "x"}) == expected
    assert to_messages({"prompt": "q", "completion": "a"}) == expected
    assert to_messages({"messages": expected}) == expected
    system = [{"role": "system", "content": "s"}]
    conversational = {"prompt": system + expected[:1], "completion": expected[1:]}
    assert to_messages(conversational) == system + expected
    assert to_messages({"instruction": "q", "input": "", "output": "a"}) == expected
    assert to_messages({"instruction": "q", "input": "ctx", "output": "a"})[0] == {
        "role": "user",
        "content": "q\n\nctx",
    }
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "s"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ]
    }
    assert to_messages(sharegpt) == system + expected


def test_to_messages_reports_the_field():
    with pytest.raises(DataValidationError, match='field "response": missing field'):
        to_messages({"instruction": "q"})


def test_load_sft_dataset_adds_messages_and_keeps_metadata(tmp_path):
    seed = write_lines(tmp_path, [row(person="Yuri Blackwood")], "a.jsonl")
    other = write_lines(tmp_path, [json.dumps({"prompt": "q", "completion": "a"})], "b.jsonl")
    one = load_sft_dataset(seed)
    assert one[0]["messages"] == to_messages(json.loads(row()))
    assert one[0]["person"] == "Yuri Blackwood"
    both = load_sft_dataset([seed, other])
    assert len(both) == 2 and both[1]["messages"][1] == {"role": "assistant", "content": "a"}


def test_load_sft_dataset_validates_first(tmp_path):
    path = write_lines(tmp_path, [row(), row()])
    with pytest.raises(DataValidationError, match="line 2"):
        load_sft_dataset(path)


def test_read_examples_keeps_rows_in_order():
    rows = read_examples(SFT_DIR / "seed_examples.jsonl")
    assert [json.dumps(r, ensure_ascii=False) for r in rows] == SEED_LINES


def test_filter_examples_reports_every_removal(tokenizer):
    long_answer = "Yuri Blackwood was born in Tampa. " * 20
    rows = [
        {"instruction": "q1", "response": "a1"},
        {"instruction": "q1", "response": "a1", "person": "dup"},
        {"instruction": "q2", "response": "   "},
        {"instruction": "q3"},
        {"instruction": "q4", "response": long_answer},
        {"prompt": "q5", "completion": "a5"},
    ]
    kept, report = filter_examples(rows, tokenizer=tokenizer, max_length=64)
    assert [r.get("instruction", r.get("prompt")) for r in kept] == ["q1", "q5"]
    assert report == {"input": 6, "kept": 2, "invalid": 1, "empty": 1, "duplicate": 1, "too_long": 1}
    assert report["input"] == report["kept"] + sum(report[k] for k in ("invalid", "empty", "duplicate", "too_long"))


def test_filter_examples_needs_a_tokenizer_to_count_tokens():
    with pytest.raises(ValueError, match="tokenizer"):
        filter_examples([], max_length=10)


# ---------------------------------------------------------------------------------------------------------
# Command line


def test_cli_validate_clean_file(tmp_path, capsys):
    path = write_lines(
        tmp_path, [json.dumps({"prompt": "q", "completion": "a"}), json.dumps({"prompt": "r", "completion": "b"})]
    )
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == f"{path}: 2 rows OK (prompt_completion format)\n"


def test_cli_validate_reports_file_line_and_field(tmp_path, capsys):
    path = write_lines(tmp_path, [row(), row(response="")])
    assert main(["validate", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f'{path}, line 2, field "response": empty response' in captured.err


def test_cli_validate_malformed_line_2(tmp_path, capsys):
    path = write_lines(tmp_path, [row(), "{oops"])
    assert main(["validate", str(path)]) == 1
    assert f"{path}, line 2: malformed JSON" in capsys.readouterr().err


def test_cli_validate_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl" in capsys.readouterr().err
