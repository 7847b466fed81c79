import re

import pytest

from sft_course.world import (
    ATTRIBUTES,
    BIO_TEMPLATES,
    QUESTION_TEMPLATES,
    canonical_sentence,
    make_world,
    probe_prefix,
    question,
)


@pytest.fixture(scope="module")
def world():
    return make_world()


def test_world_is_deterministic_for_a_seed():
    assert make_world(n_people=50, seed=3) == make_world(n_people=50, seed=3)
    assert make_world(n_people=50, seed=3).people != make_world(n_people=50, seed=4).people


def test_world_size_and_unique_names(world):
    assert len(world.people) == 1000
    assert len({p.name for p in world.people}) == 1000
    assert len(world.biographies) == 5000
    assert all(set(p.facts) == set(ATTRIBUTES) for p in world.people)


def test_splits_are_disjoint_halves(world):
    train, held_out = world.split("train"), world.split("held_out")
    assert len(train) == len(held_out) == 500
    assert not {p.name for p in train} & {p.name for p in held_out}
    with pytest.raises(ValueError, match="unknown split"):
        world.split("test")


def test_every_bio_sentence_names_its_person_in_full(world):
    by_name = {p.name: p for p in world.people}
    for bio in world.biographies[:200]:
        sentences = [s + "." for s in bio.rstrip(".").split(". ")]
        assert len(sentences) == len(ATTRIBUTES)
        names = {n for n in by_name if n in sentences[0]}
        assert len(names) == 1
        name = names.pop()
        assert all(name in s for s in sentences)
        for a in ATTRIBUTES:  # every fact of that person appears, in one of its templates
            assert any(t.format(name=name, value=by_name[name].facts[a]) in bio for t in BIO_TEMPLATES[a])


def test_each_person_gets_every_paraphrase_and_shuffled_sentences(world):
    """With 5 bios and 4 paraphrases per attribute, every paraphrase of every fact is written about every
    person at least once (the recipe that lets held-out facts be extracted), and sentence order varies."""
    people = world.people[:25]
    bios_of = {p.name: [b for b in world.biographies if re.search(rf"\b{p.name}\b", b)] for p in people}
    first_attributes = set()
    for p in people:
        assert len(bios_of[p.name]) == 5
        for a in ATTRIBUTES:
            sentences = [t.format(name=p.name, value=p.facts[a]) for t in BIO_TEMPLATES[a]]
            used = {i for i, sentence in enumerate(sentences) for bio in bios_of[p.name] if sentence in bio}
            assert used == set(range(len(BIO_TEMPLATES[a]))), (p.name, a, used)
        for bio in bios_of[p.name]:
            first = bio.split(". ")[0] + "."
            first_attributes |= {
                a for a in ATTRIBUTES if any(t.format(name=p.name, value=p.facts[a]) == first for t in BIO_TEMPLATES[a])
            }
    assert first_attributes == set(ATTRIBUTES)  # shuffled: every attribute opens some biography


def test_probe_prefix_is_the_canonical_sentence_cut_before_the_value(world):
    p = world.people[0]
    for a in ATTRIBUTES:
        assert canonical_sentence(p, a) == f"{probe_prefix(p, a)} {p.facts[a]}."


def test_questions_have_trained_and_unseen_paraphrases(world):
    p = world.people[0]
    for a in ATTRIBUTES:
        trained = {question(p, a, i) for i in range(len(QUESTION_TEMPLATES[a]["trained"]))}
        unseen = {question(p, a, i, "unseen") for i in range(len(QUESTION_TEMPLATES[a]["unseen"]))}
        assert len(trained) >= 3 and len(unseen) >= 2 and not trained & unseen
        assert all(p.name in q for q in trained | unseen)


@pytest.mark.parametrize("kwargs", [{"n_people": 1}, {"n_people": 10**6}, {"bios_per_person": 0}])
def test_bad_world_sizes_are_refused(kwargs):
    with pytest.raises(ValueError):
        make_world(**kwargs)
