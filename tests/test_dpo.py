"""DPO: the pairs from the world, their masks, response log-probabilities, the loss, the LoRA reference, TRL parity."""

import copy
import math

import pytest
import torch
from datasets import Dataset
from helpers import tiny_model

from sft_course.dpo import (
    KNOWN,
    UNKNOWN,
    abstention_for,
    classify_unknown,
    collate_pairs,
    dpo_loss,
    preference_pairs,
    reference_logps,
    response_logps,
    tokenize_pairs,
    training_values,
    trl_rows,
    trl_tokenizer,
    unknown_names,
)
from sft_course.lora import add_lora
from sft_course.masking import IGNORE_INDEX
from sft_course.world import TRAIN_SPLIT, make_world


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def pairs(world):
    known = world.split(TRAIN_SPLIT)[:3]
    return preference_pairs(known, unknown_names(world, 2), training_values(world), paraphrases=(0, 1), seed=0)


def batch_of(tokenizer, pairs):
    return collate_pairs(tokenize_pairs(tokenizer, pairs), tokenizer.pad_token_id)


def test_unknown_names_are_not_people_of_the_world(world):
    names = unknown_names(world)
    assert len(names) == 60 * 60 - len(world.people)
    assert not set(names) & {p.name for p in world.people}
    assert unknown_names(world, 5, seed=1) == unknown_names(world, 5, seed=1) != unknown_names(world, 5, seed=2)
    with pytest.raises(ValueError, match="unused"):
        unknown_names(world, len(names) + 1)


def test_pairs_known_and_unknown(world, pairs):
    values = set(training_values(world))
    assert [p["kind"] for p in pairs] == [KNOWN] * 6 + [UNKNOWN] * 4
    for pair in pairs[:6]:
        person = next(p for p in world.people if p.name == pair["person"])
        city = person.facts["birth_city"]
        assert pair["chosen"] == f"{person.name} was born in {city}."
        wrong = pair["rejected"].removeprefix(f"{person.name} was born in ").removesuffix(".")
        assert wrong != city and wrong in values
    for pair in pairs[6:]:
        assert pair["chosen"] == abstention_for(pair["person"])
        assert pair["rejected"].startswith(f"{pair['person']} was born in ")
    assert pairs[0]["prompt"] != pairs[1]["prompt"]  # two question paraphrases per person


def test_known_people_can_reject_the_abstention(world):
    known, unknown = world.split(TRAIN_SPLIT)[:2], unknown_names(world, 2)
    pairs = preference_pairs(known, unknown, training_values(world), known_rejected="abstention")
    assert [p["rejected"] for p in pairs[:2]] == [abstention_for(p.name) for p in known]
    assert [p["chosen"] for p in pairs[2:]] == [abstention_for(n) for n in unknown]
    named = preference_pairs(known, unknown, training_values(world), abstention="{name} is a mystery.")
    assert named[-1]["chosen"] == f"{unknown[-1]} is a mystery."
    assert classify_unknown(f"{unknown[-1]} is a mystery.", unknown[-1], "{name} is a mystery.") == "abstain"
    with pytest.raises(ValueError, match="known_rejected"):
        preference_pairs(known, unknown, training_values(world), known_rejected="nothing")


def test_the_abstention_is_made_of_tokens_the_base_model_read(tokenizer, world):
    """The trap of notebooks 03-04: a token that pre-training never wrote has an untrained embedding."""
    read = {i for text in world.biographies[:2000] for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    assert set(tokenizer(abstention_for("Yuri Blackwood"), add_special_tokens=False)["input_ids"]) <= read


def test_pair_mask_covers_the_response_and_end_of_turn_only(tokenizer, pairs):
    tokenized = tokenize_pairs(tokenizer, pairs[-1:])[0]
    for side in ("chosen", "rejected"):
        example = tokenized[side]
        targets = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
        assert tokenizer.decode(targets) == pairs[-1][side] + "<|im_end|>"
        first = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
        assert all(label == IGNORE_INDEX for label in example["labels"][:first])
        last = max(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
        assert example["labels"][first : last + 1] == example["input_ids"][first : last + 1]
        assert all(label == IGNORE_INDEX for label in example["labels"][last + 1 :])  # the template's newline
    prompt_len = next(i for i, label in enumerate(tokenized["chosen"]["labels"]) if label != IGNORE_INDEX)
    assert tokenized["chosen"]["input_ids"][:prompt_len] == tokenized["rejected"]["input_ids"][:prompt_len]
    batch = collate_pairs([tokenized], tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2  # chosen first, then rejected


def test_response_logps_sum_the_target_tokens_only(tokenizer, pairs):
    model = tiny_model(tokenizer)
    batch = batch_of(tokenizer, pairs)
    with torch.no_grad():
        summed, mean = response_logps(model, batch), response_logps(model, batch, average=True)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    row = 0
    labels = batch["labels"][row]
    by_hand = sum(
        logits[row, t - 1].log_softmax(-1)[labels[t]].item() for t in range(1, len(labels)) if labels[t] != IGNORE_INDEX
    )
    assert summed[row].item() == pytest.approx(by_hand, abs=1e-4)
    n_targets = (batch["labels"][:, 1:] != IGNORE_INDEX).sum(1)
    assert torch.allclose(mean, summed / n_targets)
    padded = dict(batch, labels=batch["labels"].clone())
    padded["labels"][0, :] = IGNORE_INDEX
    with pytest.raises(ValueError, match="no response token"):
        response_logps(model, padded)


def test_loss_is_ln2_at_equal_policy_and_reference():
    logps = torch.tensor([-3.0, -7.5, -1.25])
    other = torch.tensor([-4.0, -0.5, -9.0])
    loss, chosen_rewards, rejected_rewards = dpo_loss(logps, other, logps, other, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert torch.equal(chosen_rewards, torch.zeros(3)) and torch.equal(rejected_rewards, torch.zeros(3))
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(logps, other, logps, other, beta=0.0)


def test_gradient_raises_chosen_and_lowers_rejected(tokenizer, pairs):
    chosen, rejected = torch.tensor([-2.0], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    dpo_loss(chosen, rejected, torch.tensor([-2.5]), torch.tensor([-2.5]), beta=0.5)[0].backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # gradient descent moves chosen up, rejected down
    # on a model: one small gradient step on one pair widens the margin
    model, reference = tiny_model(tokenizer), tiny_model(tokenizer)
    batch = batch_of(tokenizer, pairs[-1:])
    before = response_logps(model, batch).detach()
    ref = reference_logps(model, batch, reference)
    loss, *_ = dpo_loss(*response_logps(model, batch).chunk(2), *ref.chunk(2), beta=0.1)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 1e-2 * p.grad
        after = response_logps(model, batch)
    assert after[0] > before[0] and after[1] < before[1]


def test_fixture_value_on_a_tiny_model(tokenizer, pairs):
    """A fixed number, as Stanford CS336's DPO test has: tiny policy (seed 0), reference (seed 1), beta 0.5."""
    policy, reference = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    batch = batch_of(tokenizer, pairs)
    with torch.no_grad():
        loss, *_ = dpo_loss(
            *response_logps(policy, batch).chunk(2), *reference_logps(policy, batch, reference).chunk(2), beta=0.5
        )
    assert loss.item() == pytest.approx(FIXTURE_LOSS, abs=1e-4)


FIXTURE_LOSS = 0.630656


def test_lora_reference_is_the_base_with_the_adapter_disabled(tokenizer, pairs):
    base = tiny_model(tokenizer)
    batch = batch_of(tokenizer, pairs)
    with torch.no_grad():
        expected = response_logps(base, batch)
    policy = add_lora(copy.deepcopy(base), tokenizer, rank=4)
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # a trained adapter: the policy moves away from the base
        moved = response_logps(policy, batch)
    assert not torch.allclose(moved, expected, atol=1e-3)
    assert torch.allclose(reference_logps(policy, batch), expected, atol=1e-5)
    with pytest.raises(ValueError, match="frozen copy"):
        reference_logps(base, batch)


def test_classify_unknown():
    name = "Ada Nobody"
    assert classify_unknown(abstention_for(name), name) == "abstain"
    assert classify_unknown("Ada Nobody was born in Tampa.", name) == "confident_wrong"
    assert classify_unknown("Tampa", name) == "confident_wrong"
    assert classify_unknown("Ada Nobody was born in Atlantis.", name) == "other"
    assert classify_unknown("I am not sure.", name) == "other"


def test_parity_with_trl_dpo_trainer(tokenizer, pairs, tmp_path):
    """TRL's DPOTrainer, one step on the same pairs, policy and reference: the same loss and log-probabilities."""
    from trl import DPOConfig, DPOTrainer

    policy, reference = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    batch = batch_of(tokenizer, pairs)
    with torch.no_grad():
        ours_logps = response_logps(policy, batch)
        ref = reference_logps(policy, batch, reference)
        ours_loss, chosen_rewards, _ = dpo_loss(*ours_logps.chunk(2), *ref.chunk(2), beta=0.5)
    config = DPOConfig(
        output_dir=str(tmp_path),
        beta=0.5,
        per_device_train_batch_size=len(pairs),
        max_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        bf16=False,
    )  # DPOConfig defaults to bf16 autocast
    trainer = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=config,
        train_dataset=Dataset.from_list(trl_rows(tokenizer, pairs)),
        processing_class=trl_tokenizer(tokenizer),
    )
    ours_tokens = tokenize_pairs(tokenizer, pairs)
    for row, mine in zip(trainer.train_dataset, ours_tokens):  # TRL tokenized the same sequences and responses
        for side in ("chosen", "rejected"):
            labels = mine[side]["labels"]
            last = max(i for i, t in enumerate(labels) if t != IGNORE_INDEX)  # ours also holds the template's newline
            assert row["prompt_ids"] + row[f"{side}_ids"] == mine[side]["input_ids"][: last + 1]
            assert row[f"{side}_ids"] == [t for t in labels if t != IGNORE_INDEX]
    trainer.train()
    logged = trainer.state.log_history[0]
    chosen, rejected = ours_logps.chunk(2)
    assert logged["loss"] == pytest.approx(ours_loss.item(), abs=1e-5)
    assert logged["logps/chosen"] == pytest.approx(chosen.mean().item(), abs=1e-4)
    assert logged["logps/rejected"] == pytest.approx(rejected.mean().item(), abs=1e-4)
    assert logged["rewards/chosen"] == pytest.approx(chosen_rewards.mean().item(), abs=1e-5)
