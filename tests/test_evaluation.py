"""The evaluation harness: prompts, sampled people, perplexity, batched generation, the report's keys."""

import math

import pytest
import torch

from sft_course import load_model
from sft_course.evaluation import (
    evaluate_model,
    few_shot_text_accuracy,
    few_shot_text_prompt,
    few_shot_turns,
    fresh_biographies,
    perplexity,
    perplexity_by_position,
    qa_prompts,
    sample_people,
    text_answer,
    text_losses,
)
from sft_course.generation import generate
from sft_course.world import ATTRIBUTES, HELD_OUT_SPLIT, TRAIN_SPLIT, canonical_sentence, make_world

WORLD = make_world()
PEOPLE = WORLD.people[:20]

REQUIRED_KEYS = {
    "seen_accuracy",
    "held_out_accuracy",
    "completion_probe_accuracy",
    "stop_rate",
    "perplexity",
    "seen_unseen_paraphrase_accuracy",
    "held_out_unseen_paraphrase_accuracy",
    "confident_wrong_rate",
    "ended_document_rate",
    "few_shot_held_out_accuracy",
    "few_shot_stop_rate",
    "json_format_compliance",
    "json_valid_rate",
    "few_shot_accuracy",
    "few_shot_text_accuracy",
    "few_shot_cloze_accuracy",
    *(f"{split}_{a}" for split in ("seen", "held_out", "seen_unseen", "held_out_unseen") for a in ATTRIBUTES),
}


@pytest.fixture(scope="module")
def bundled():
    return load_model(device="cpu")


def pairs_of(people):
    return [(p, a) for a in ATTRIBUTES for p in people]


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
    texts = fresh_biographies(list(WORLD.people[:5])) + ["Yuri Blackwood was born in Tampa."]
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


def test_text_losses_are_the_per_text_means_behind_the_perplexity(bundled):
    model, tok = bundled
    texts = fresh_biographies(list(WORLD.people[:3])) + ["Yuri Blackwood was born in Tampa."]
    losses = text_losses(model, tok, texts, batch_size=2)
    assert len(losses) == len(texts)
    for text, loss in zip(texts, losses):
        assert math.exp(loss) == pytest.approx(perplexity(model, tok, [text]), rel=1e-5)
    with pytest.raises(ValueError, match="no texts"):
        text_losses(model, tok, [])


def test_generate_tells_stopping_from_ending_the_document(bundled):
    model, tok = bundled
    outs = generate(model, tok, qa_prompts(tok, pairs_of(PEOPLE[:4])), max_new_tokens=30)
    for o in outs:
        assert o["stopped"] == (o["stop_token"] == "<|im_end|>")
        assert o["ended_document"] == (o["stop_token"] == "<|endoftext|>")
    assert any(o["ended_document"] for o in outs)  # the base model ends chat answers like a biography
    cut = generate(model, tok, [PEOPLE[0].name], max_new_tokens=1)[0]  # one token: the budget ends it
    assert cut["stop_token"] is None and not cut["stopped"] and not cut["ended_document"]


def test_left_padded_batched_generation_equals_one_by_one(bundled):
    model, tok = bundled
    pairs = [(p, a) for p, a in zip(PEOPLE[:6], ATTRIBUTES * 2)]
    prompts = qa_prompts(tok, pairs[:3]) + qa_prompts(tok, pairs[3:], n_shots=2, world=WORLD)
    lengths = {len(tok(p, add_special_tokens=False).input_ids) for p in prompts}
    assert len(lengths) > 2  # really different lengths, so the batch is really padded
    batched = generate(model, tok, prompts, max_new_tokens=12)
    single = [generate(model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert batched == single


@pytest.mark.slow
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


# ------------------------------------------------------------------------------------ plain-text few-shot prompts


def test_few_shot_text_prompts_have_no_chat_tokens_and_end_with_the_question_or_the_cloze():
    person = WORLD.split(HELD_OUT_SPLIT)[0]
    asked = few_shot_text_prompt(WORLD, person, "birth_city", 3)
    cloze = few_shot_text_prompt(WORLD, person, "birth_city", 3, style="cloze")
    assert "<|im_" not in asked + cloze and "\n" not in asked + cloze
    assert asked.endswith(f"<|endoftext|>Where was {person.name} born?")  # one document per shot
    assert cloze.endswith(f"<|endoftext|>{person.name} was born in") and cloze.count("<|endoftext|>") == 3
    shots = [p for p in WORLD.split(TRAIN_SPLIT) if canonical_sentence(p, "birth_city") in cloze]
    assert len(shots) == 3 and all(canonical_sentence(p, "birth_city") in asked for p in shots)
    assert asked == few_shot_text_prompt(WORLD, person, "birth_city", 3)  # seeded
    with pytest.raises(ValueError, match="style"):
        few_shot_text_prompt(WORLD, person, "birth_city", 3, style="chat")


def test_text_answers_are_cut_at_the_first_sentence():
    person = PEOPLE[0]
    sentence = canonical_sentence(person, "birth_city")
    prefix = sentence[: sentence.rindex(" ")]
    assert text_answer("Q? " + prefix, " " + person.facts["birth_city"] + ". More text.", "cloze") == {
        "text": sentence,
        "stopped": True,
    }
    assert text_answer("Where?", " " + sentence + " Next sentence.", "question") == {"text": sentence, "stopped": True}
    assert text_answer("X.<|endoftext|>" + prefix, " " + person.facts["birth_city"] + ".", "cloze")["text"] == sentence
    assert text_answer("Where?", " no full stop", "question")["stopped"] is False


def test_the_base_model_completes_a_cloze_few_shot_prompt(bundled):
    model, tok = bundled
    people = WORLD.split(HELD_OUT_SPLIT)[:6]
    cloze = few_shot_text_accuracy(model, tok, people, n_shots=1, style="cloze", world=WORLD)
    assert cloze["accuracy"] >= 0.6  # the facts are there when asked in pre-training's own form
    assert len(cloze["answers"]) == 6 * len(ATTRIBUTES)


# ------------------------------------------------------------------------------------ perplexity by position


def test_perplexity_by_position_splits_every_token_once_and_matches_perplexity(bundled):
    model, tok = bundled
    texts = fresh_biographies(PEOPLE[:4])
    split = perplexity_by_position(model, tok, texts)
    assert split["all"] == pytest.approx(perplexity(model, tok, texts), rel=1e-4)
    assert split["first_sentence_tokens"] + split["rest_tokens"] == split["all_tokens"]
    assert split["sentence_start_tokens"] + split["other_tokens"] == split["all_tokens"]
    assert split["sentence_start_tokens"] == 4 * (len(ATTRIBUTES) - 1)  # one per sentence after the first
    mixed = math.log(split["all"]) * split["all_tokens"]
    parts = (
        math.log(split["sentence_start"]) * split["sentence_start_tokens"]
        + math.log(split["other"]) * split["other_tokens"]
    )
    assert parts == pytest.approx(mixed, rel=1e-4)


def test_sentence_start_tokens_are_the_names_after_a_full_stop(tokenizer):
    from sft_course.evaluation import _sentence_starts

    text = "Ada Byron was born in Tampa. Ada Byron works for Intel."
    ids, in_first, starts = _sentence_starts(tokenizer, text)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert [t for t, s in zip(tokens, starts) if s] == [tokens[tokens.index(".") + 1]]
    assert tokenizer.convert_tokens_to_string([tokens[tokens.index(".") + 1]]).strip().startswith("A")
    assert in_first[: tokens.index(".") + 1] == [True] * (tokens.index(".") + 1) and not any(
        in_first[tokens.index(".") + 1 :]
    )
