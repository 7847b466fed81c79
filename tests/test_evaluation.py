"""The evaluation harness: scoring on strings, JSON compliance, perplexity, batched generation, the report's keys."""

import io
import json
import math
import random
from contextlib import redirect_stdout

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sft_course import load_base_model
from sft_course.evaluation import (
    ERROR_KINDS,
    OUTCOMES,
    classify_answer,
    error_kind,
    error_kind_rates,
    evaluate_model,
    few_shot_text_accuracy,
    few_shot_text_prompt,
    few_shot_turns,
    first_sentence,
    fresh_biographies,
    is_valid_value,
    parse_answer,
    perplexity,
    perplexity_by_position,
    qa_prompts,
    sample_people,
    score_answers,
    score_json_answers,
    text_answer,
)
from sft_course.data_quality import wrong_value
from sft_course.generation import generate
from sft_course.world import ATTRIBUTES, HELD_OUT_SPLIT, TRAIN_SPLIT, canonical_sentence, make_world, profile_json

WORLD = make_world()
PEOPLE = WORLD.people[:20]

REQUIRED_KEYS = {
    "seen_accuracy", "held_out_accuracy", "completion_probe_accuracy", "stop_rate", "perplexity",
    "seen_unseen_paraphrase_accuracy", "held_out_unseen_paraphrase_accuracy", "confident_wrong_rate",
    "few_shot_held_out_accuracy", "few_shot_stop_rate", "json_format_compliance", "json_valid_rate",
    "few_shot_accuracy", "few_shot_text_accuracy", "few_shot_cloze_accuracy",
    *(f"{split}_{a}" for split in ("seen", "held_out", "seen_unseen", "held_out_unseen") for a in ATTRIBUTES),
}


@pytest.fixture(scope="module")
def bundled():
    return load_base_model(device="cpu")


def pairs_of(people):
    return [(p, a) for a in ATTRIBUTES for p in people]


# ---------------------------------------------------------------------------------------------- scoring strings

def test_a_model_that_answers_perfectly_scores_one():
    pairs = pairs_of(PEOPLE)
    sentences = [{"text": canonical_sentence(p, a), "stopped": True} for p, a in pairs]
    short = [{"text": p.facts[a], "stopped": True} for p, a in pairs]
    for outputs in (sentences, short):
        s = score_answers(pairs, outputs)
        assert s["accuracy"] == s["correct_rate"] == s["stop_rate"] == s["lenient_accuracy"] == 1.0
        assert s["per_attribute"] == {a: 1.0 for a in ATTRIBUTES}
        assert s["confident_wrong_rate"] == s["off_format_rate"] == s["no_stop_rate"] == 0.0


def test_right_text_without_a_stop_is_not_correct_but_is_lenient_correct():
    pairs = pairs_of(PEOPLE[:4])
    run_on = [{"text": canonical_sentence(p, a) + " " + canonical_sentence(p, "major"), "stopped": False}
              for p, a in pairs]
    s = score_answers(pairs, run_on)
    assert s["accuracy"] == 0.0 and s["no_stop_rate"] == 1.0 and s["stop_rate"] == 0.0
    assert s["lenient_accuracy"] == 1.0


def test_ending_the_document_is_not_ending_the_turn():
    pairs = pairs_of(PEOPLE[:2])
    doc_end = [{"text": canonical_sentence(p, a), "stopped": True, "stop_token": "<|endoftext|>"} for p, a in pairs]
    turn_end = [dict(o, stop_token="<|im_end|>") for o in doc_end]
    assert score_answers(pairs, doc_end)["no_stop_rate"] == 1.0
    assert score_answers(pairs, doc_end)["stop_rate"] == 0.0
    assert score_answers(pairs, turn_end)["accuracy"] == 1.0
    assert score_answers(pairs, doc_end, end_of_turn=None)["accuracy"] == 1.0  # a tokenizer without ChatML


def test_outcomes_of_typical_answers():
    p = PEOPLE[0]
    city = p.facts["birth_city"]
    other_city = next(c for c in ("Tampa", "Denver") if c != city)
    assert classify_answer(city, True, p, "birth_city") == "correct"
    assert classify_answer(f"{city}.", True, p, "birth_city") == "correct"
    assert classify_answer(f"{p.name} was born in {city}.", True, p, "birth_city") == "correct"
    assert classify_answer(other_city, True, p, "birth_city") == "confident_wrong"
    assert classify_answer(f"{p.name} was born in {other_city}.", True, p, "birth_city") == "confident_wrong"
    assert classify_answer(f"{p.name} was born in {city}.", False, p, "birth_city") == "no_stop"
    assert classify_answer("I do not know.", True, p, "birth_city") == "off_format"
    assert classify_answer(f"{city} Bay", True, p, "birth_city") == "off_format"  # not a city of the world
    assert classify_answer(f"{PEOPLE[1].name} was born in {other_city}.", True, p, "birth_city") == "off_format"
    assert classify_answer(f"{p.name} was born on {city}.", True, p, "birth_city") == "off_format"  # wrong template


def test_mixed_answers_give_the_expected_rates():
    p, q = PEOPLE[0], PEOPLE[1]
    pairs = [(p, "employer"), (q, "employer"), (p, "major"), (q, "major")]
    wrong_major = wrong_value("major", q.facts["major"], random.Random(0))
    outputs = [{"text": p.facts["employer"], "stopped": True}, {"text": "Hmm", "stopped": True},
               {"text": canonical_sentence(p, "major"), "stopped": True}, {"text": wrong_major, "stopped": True}]
    s = score_answers(pairs, outputs, attributes=("employer", "major"))
    assert s["per_attribute"] == {"employer": 0.5, "major": 0.5}
    assert (s["correct_rate"], s["confident_wrong_rate"], s["off_format_rate"]) == (0.5, 0.25, 0.25)
    assert sum(s[f"{o}_rate"] for o in OUTCOMES) == pytest.approx(1.0)


def test_score_answers_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        score_answers(pairs_of(PEOPLE[:1])[:2], [{"text": "x", "stopped": True}])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(WORLD.people), st.sampled_from(ATTRIBUTES), st.integers(0, 2**32 - 1), st.booleans())
def test_any_well_formed_wrong_fact_is_confident_wrong(person, attribute, seed, sentence):
    value = wrong_value(attribute, person.facts[attribute], random.Random(seed))
    assert is_valid_value(value, attribute) and value != person.facts[attribute]
    text = canonical_sentence(person, attribute).replace(person.facts[attribute], value) if sentence else value
    assert parse_answer(text, person, attribute) == value
    assert classify_answer(text, True, person, attribute) == "confident_wrong"
    assert classify_answer(canonical_sentence(person, attribute), True, person, attribute) == "correct"


def test_first_sentence():
    assert first_sentence("Ann was born in Tampa. Ann works for Sony.") == "Ann was born in Tampa."
    assert first_sentence("Tampa\nAnn works") == "Tampa"
    assert first_sentence("May 3, 1960") == "May 3, 1960"


# ------------------------------------------------------------------------------------------------------- JSON

def test_json_scoring_separates_valid_compliant_and_exact():
    p, q, r, s = PEOPLE[:4]
    broken_value = json.loads(profile_json(r))
    broken_value["employer"] = wrong_value("employer", r.facts["employer"], random.Random(1))
    texts = [
        profile_json(p),                                  # exact
        json.dumps({"name": q.name}),                     # valid JSON, wrong keys
        json.dumps(broken_value),                         # compliant, one field wrong
        profile_json(s)[:-1],                             # truncated: not JSON
    ]
    out = score_json_answers([p, q, r, s], texts)
    assert out["json_valid_rate"] == 0.75
    assert out["format_compliance"] == 0.5
    assert out["exact_match"] == 0.25
    assert out["field_accuracy"] == pytest.approx((5 + 4) / 20)


def test_json_list_or_numbers_are_not_compliant():
    p = PEOPLE[0]
    as_list = json.dumps(list(json.loads(profile_json(p)).values()))
    numbers = json.dumps({"name": p.name, **{a: 1 for a in ATTRIBUTES}})
    assert score_json_answers([p, p], [as_list, numbers])["format_compliance"] == 0.0


# ------------------------------------------------------------------------------------------- prompts and people

def test_few_shot_turns_are_about_other_training_people_and_deterministic():
    person = WORLD.split(HELD_OUT_SPLIT)[0]
    turns = few_shot_turns(WORLD, person, "birth_city", 3)
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3
    assert turns == few_shot_turns(WORLD, person, "birth_city", 3)
    train_names = {p.name for p in WORLD.split(TRAIN_SPLIT)}
    shot_names = [t["content"].split(" was born in ")[0] for t in turns[1::2]]
    assert len(set(shot_names)) == 3 and set(shot_names) <= train_names and person.name not in shot_names
    assert all(person.name not in t["content"] for t in turns)
    seen = WORLD.split(TRAIN_SPLIT)[0]  # a training person never gets itself as a shot
    assert all(seen.name not in t["content"] for t in few_shot_turns(WORLD, seen, "major", 20))


def test_qa_prompts_rotate_paraphrases_and_end_with_the_generation_prompt(bundled):
    _, tok = bundled
    pairs = [(p, "employer") for p in PEOPLE[:4]]
    prompts = qa_prompts(tok, pairs, kind="unseen", paraphrase="rotate")
    assert "What company is" in prompts[0] and "Name the employer of" in prompts[1] and "What company is" in prompts[2]
    assert all(p.endswith("<|im_start|>assistant\n") for p in prompts)
    few = qa_prompts(tok, pairs, n_shots=2, world=WORLD)
    assert all(f.count("<|im_start|>user") == 3 and f.endswith(z) for f, z in zip(few, qa_prompts(tok, pairs)))
    other = qa_prompts(tok, pairs, paraphrase=[1, 2])
    assert "Which company employs" in other[0] and "Where does" in other[1] and "Which company employs" in other[2]
    for bad in (7, [0, 3], "all"):
        with pytest.raises(ValueError, match="paraphrase"):
            qa_prompts(tok, pairs, paraphrase=bad)


def test_sample_people_is_seeded_and_split_pure():
    seen, held = sample_people(WORLD, 30, seed=3)
    assert (seen, held) == sample_people(WORLD, 30, seed=3)
    assert len(seen) == len(held) == 30
    assert {p.split for p in seen} == {TRAIN_SPLIT} and {p.split for p in held} == {HELD_OUT_SPLIT}


# ---------------------------------------------------------------------------------------- with the real model

def test_perplexity_equals_exp_of_the_token_weighted_loss_computed_by_hand(bundled):
    model, tok = bundled
    texts = fresh_biographies(WORLD, list(WORLD.people[:5])) + ["Yuri Blackwood was born in Tampa."]
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all
            ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
            loss = model(input_ids=ids, labels=ids).loss.item()  # mean over the len-1 predicted tokens
            total += loss * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    expected = math.exp(total / count)
    assert perplexity(model, tok, texts, batch_size=4) == pytest.approx(expected, rel=1e-4)
    tok.padding_side = "left"  # the caller's padding side must not change the result, and is restored
    assert perplexity(model, tok, texts, batch_size=4) == pytest.approx(expected, rel=1e-4)
    assert tok.padding_side == "left"
    tok.padding_side = "right"


def test_left_padded_batched_generation_equals_one_by_one(bundled):
    model, tok = bundled
    pairs = [(p, a) for p, a in zip(PEOPLE[:6], ATTRIBUTES * 2)]
    prompts = qa_prompts(tok, pairs[:3]) + qa_prompts(tok, pairs[3:], n_shots=2, world=WORLD)
    lengths = {len(tok(p, add_special_tokens=False).input_ids) for p in prompts}
    assert len(lengths) > 2  # really different lengths, so the batch is really padded
    batched = generate(model, tok, prompts, max_new_tokens=12)
    single = [generate(model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single


def test_evaluate_model_reports_every_key_and_agrees_with_the_experiment_runner(bundled):
    from sft_course.experiment import evaluate_accuracy

    model, tok = bundled
    report = evaluate_model(model, tok, n_people=6, n_shots=2)
    assert REQUIRED_KEYS <= set(report)
    assert all(0.0 <= v <= 1.0 for k, v in report.items() if k not in ("perplexity", "n_people"))
    assert report["perplexity"] > 1.0
    assert report["n_people"] == 6
    runner = evaluate_accuracy(model, tok, n_people=6)
    assert {k: report[k] for k in runner} == runner
    # the base model knows the facts but does not answer in chat (model card: probe >= 0.95, chat QA <= 0.05)
    assert report["completion_probe_accuracy"] >= 0.8
    assert report["held_out_accuracy"] <= 0.2


def test_cli_eval_prints_the_report_as_the_last_line():
    from sft_course.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["eval", "--people", "3", "--no-json"]) == 0
    report = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert REQUIRED_KEYS - {"json_format_compliance", "json_valid_rate"} <= set(report)
    assert "json_format_compliance" not in report


def test_error_kind_says_which_part_of_the_answer_went_wrong():
    p, other = PEOPLE[0], PEOPLE[1]
    city, date = p.facts["birth_city"], p.facts["birth_date"]
    other_city = next(c for c in ("Tampa", "Denver") if c != city)
    assert error_kind(f"{p.name} was born in {city}.", True, p, "birth_city") == "correct"
    assert error_kind(f"{p.name} was born in {city}.", False, p, "birth_city") == "no_stop"
    assert error_kind(f"{p.name} was born in {other_city}.", True, p, "birth_city") == "wrong_value"
    assert error_kind(f"{p.name} is a native of {other_city}.", True, p, "birth_city") == "wrong_value"
    assert error_kind(f"{p.name} was born in Tampa Bay.", True, p, "birth_city") == "wrong_value"  # no such city
    assert error_kind(f"{p.name} was born on {date}.", True, p, "birth_city") == "other_question"
    assert error_kind(f"{p.name} works for {p.facts['employer']}.", True, p, "birth_city") == "other_question"
    assert error_kind(f"{other.name} was born in {city}.", True, p, "birth_city") == "wrong_name"
    assert error_kind(f"{p.name} likes long walks.", True, p, "birth_city") == "other"
    assert error_kind(f"{p.name}.", True, p, "birth_city") == "other"
    assert error_kind(f"{p.name}son was born in {city}.", True, p, "birth_city") == "wrong_name"


def test_error_kind_rates_cover_every_answer_and_name_unknown_people():
    pairs = [(p, a) for a in ("birth_city", "employer") for p in PEOPLE[:2]]
    texts = [canonical_sentence(PEOPLE[0], "birth_city"), f"{PEOPLE[0].name} majored in Music.",
             canonical_sentence(PEOPLE[1], "employer"), f"{PEOPLE[1].name} likes tea."]
    outputs = [{"text": t, "stopped": True} for t in texts]
    # pairs order: (p0, city), (p1, city), (p0, employer), (p1, employer)
    rates = error_kind_rates(score_answers(pairs, outputs), PEOPLE[:2])
    assert set(rates) == set(ERROR_KINDS)
    assert math.isclose(sum(rates.values()), 1.0)
    assert rates["correct"] == 0.25  # only (p0, city) is right
    assert rates["wrong_name"] == 0.5  # p0's name in the answer about p1, and p1's in the answer about p0
    assert rates["other"] == 0.25  # the right name, then no statement of a fact
    with pytest.raises(ValueError, match=PEOPLE[1].name):
        error_kind_rates(score_answers(pairs, outputs), PEOPLE[:1])


# ------------------------------------------------------------------------------------ plain-text few-shot prompts

def test_few_shot_text_prompts_have_no_chat_tokens_and_end_with_the_question_or_the_cloze():
    person = WORLD.split(HELD_OUT_SPLIT)[0]
    asked = few_shot_text_prompt(WORLD, person, "birth_city", 3)
    cloze = few_shot_text_prompt(WORLD, person, "birth_city", 3, style="cloze")
    assert "<|im_" not in asked + cloze and "\n" not in asked + cloze
    assert asked.endswith(f"<|endoftext|>Where was {person.name} born?")      # one document per shot
    assert cloze.endswith(f"<|endoftext|>{person.name} was born in") and cloze.count("<|endoftext|>") == 3
    shots = [p for p in WORLD.split(TRAIN_SPLIT) if canonical_sentence(p, "birth_city") in cloze]
    assert len(shots) == 3 and all(canonical_sentence(p, "birth_city") in asked for p in shots)
    assert asked == few_shot_text_prompt(WORLD, person, "birth_city", 3)          # seeded
    with pytest.raises(ValueError, match="style"):
        few_shot_text_prompt(WORLD, person, "birth_city", 3, style="chat")


def test_text_answers_are_cut_at_the_first_sentence():
    person = PEOPLE[0]
    sentence = canonical_sentence(person, "birth_city")
    prefix = sentence[: sentence.rindex(" ")]
    assert text_answer("Q? " + prefix, " " + person.facts["birth_city"] + ". More text.", "cloze") == \
        {"text": sentence, "stopped": True}
    assert text_answer("Where?", " " + sentence + " Next sentence.", "question") == {"text": sentence, "stopped": True}
    assert text_answer("X.<|endoftext|>" + prefix, " " + person.facts["birth_city"] + ".", "cloze")["text"] == sentence
    assert text_answer("Where?", " no full stop", "question")["stopped"] is False


def test_the_base_model_completes_a_cloze_few_shot_prompt(bundled):
    model, tok = bundled
    people = WORLD.split(HELD_OUT_SPLIT)[:6]
    cloze = few_shot_text_accuracy(model, tok, people, n_shots=1, style="cloze", world=WORLD)
    assert cloze["accuracy"] >= 0.6         # the facts are there when asked in pre-training's own form
    assert len(cloze["answers"]) == 6 * len(ATTRIBUTES)


# ------------------------------------------------------------------------------------ perplexity by position

def test_perplexity_by_position_splits_every_token_once_and_matches_perplexity(bundled):
    model, tok = bundled
    texts = fresh_biographies(WORLD, PEOPLE[:4])
    split = perplexity_by_position(model, tok, texts)
    assert split["all"] == pytest.approx(perplexity(model, tok, texts), rel=1e-4)
    assert split["first_sentence_tokens"] + split["rest_tokens"] == split["all_tokens"]
    assert split["sentence_start_tokens"] + split["other_tokens"] == split["all_tokens"]
    assert split["sentence_start_tokens"] == 4 * (len(ATTRIBUTES) - 1)      # one per sentence after the first
    mixed = math.log(split["all"]) * split["all_tokens"]
    parts = math.log(split["sentence_start"]) * split["sentence_start_tokens"] + math.log(split["other"]) * split["other_tokens"]
    assert parts == pytest.approx(mixed, rel=1e-4)


def test_sentence_start_tokens_are_the_names_after_a_full_stop(tokenizer):
    from sft_course.evaluation import _sentence_starts

    text = "Ada Byron was born in Tampa. Ada Byron works for Intel."
    ids, in_first, starts = _sentence_starts(tokenizer, text)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert [t for t, s in zip(tokens, starts) if s] == [tokens[tokens.index(".") + 1]]
    assert tokenizer.convert_tokens_to_string([tokens[tokens.index(".") + 1]]).strip().startswith("A")
    assert in_first[: tokens.index(".") + 1] == [True] * (tokens.index(".") + 1) and not any(in_first[tokens.index(".") + 1:])
