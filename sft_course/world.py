"""A deterministic synthetic world: people, their facts, and the biographies a base model pre-trains on.

The recipe follows "Physics of Language Models, Part 3.1" (Allen-Zhu & Li, 2023): several paraphrased
biographies per person, sentences shuffled, and the full name in every sentence. With that recipe the
facts are stored so that a question about them can later be answered for people never seen in SFT.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

FIRST_NAMES = (
    "Yuri Alma Bruno Clara Dmitri Elena Farid Greta Hiro Ines Jonas Kira Luca Mira Nadia Omar Priya Quinn "
    "Rosa Sven Talia Umar Vera Wade Xenia Yara Zane Abel Beatrix Caspar Daria Emil Fiona Gideon Hana Ivo "
    "Jana Kofi Lena Milo Nora Otto Pia Rafael Selma Tomas Una Viktor Wanda Axel Bianca Cyrus Delia Ezra "
    "Flora Gustav Helga Isaac Juno Karl"
).split()

LAST_NAMES = (
    "Blackwood Abbott Brennan Castillo Dalton Eriksen Fairbanks Galloway Hartley Ingram Jansen Kowalski "
    "Lindqvist Moreau Novak Okafor Petrov Quintero Rasmussen Sandoval Thornton Underwood Varga Whitaker "
    "Yamada Zimmerman Albright Bergstrom Calloway Delgado Everett Fontaine Gallagher Holloway Iverson "
    "Jaramillo Kensington Lockhart Montague Nakamura Osborne Pemberton Quigley Rutherford Sorensen "
    "Tanaka Valdez Winslow Yorke Ashford Beaumont Crawford Donovan Ellsworth Fitzgerald Grayson Hawthorne "
    "Kingsley Langley Mercer"
).split()

CITIES = (
    "Tampa|Denver|Boston|Seattle|Austin|Chicago|Phoenix|Portland|Atlanta|Detroit|Miami|Dallas|Houston|"
    "Memphis|Nashville|Omaha|Tucson|Raleigh|Madison|Boise|Reno|Fresno|Albany|Buffalo|Cleveland|Columbus|"
    "Richmond|Savannah|Spokane|Toledo|Wichita|Anchorage|Honolulu|Orlando|Pittsburgh|Sacramento|"
    "Baltimore|Charlotte|Milwaukee|Louisville"
).split("|")

UNIVERSITIES = (
    "Stanford University|Yale University|Princeton University|Duke University|Rice University|"
    "Cornell University|Brown University|Emory University|Tufts University|Purdue University|"
    "Vanderbilt University|Columbia University|Harvard University|Georgetown University|"
    "Northwestern University|Dartmouth College|Amherst College|Oberlin College|Caltech|MIT"
).split("|")

MAJORS = (
    "Physics|Chemistry|Biology|History|Economics|Philosophy|Linguistics|Mathematics|Architecture|"
    "Psychology|Sociology|Astronomy|Geology|Music|Literature|Statistics|Nursing|Accounting|Journalism|"
    "Anthropology"
).split("|")

EMPLOYERS = (
    "Google|Boeing|Pfizer|Intel|Nike|Netflix|Adobe|Oracle|Cisco|Walmart|Target|Ford|Tesla|Disney|"
    "Amazon|Microsoft|Apple|IBM|Shell|Siemens|Sony|Toyota|Visa|Nvidia|Spotify|Airbnb|Uber|Honda|"
    "Samsung|Deloitte"
).split("|")

MONTHS = ("January February March April May June July August September October November December").split()

ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer")
# The values each attribute other than birth_date is drawn from (a birth date is any `random_date`).
ATTRIBUTE_VALUES: dict[str, list[str]] = {
    "birth_city": CITIES,
    "university": UNIVERSITIES,
    "major": MAJORS,
    "employer": EMPLOYERS,
}

# Biography sentence templates. The first template of each attribute is the canonical phrasing: the
# completion probe uses its prefix, and "sentence" SFT answers restate the fact with it.
BIO_TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{name} was born on {value}.",
        "{name} came into the world on {value}.",
        "{name} celebrates a birthday on {value}.",
        "The birth date of {name} is {value}.",
    ),
    "birth_city": (
        "{name} was born in {value}.",
        "{name} is a native of {value}.",
        "{name} spent the early years of life in {value}.",
        "The birthplace of {name} is {value}.",
    ),
    "university": (
        "{name} studied at {value}.",
        "{name} graduated from {value}.",
        "{name} received a degree from {value}.",
        "{name} attended {value} as a student.",
    ),
    "major": (
        "{name} majored in {value}.",
        "{name} chose {value} as a field of study.",
        "{name} completed a degree in {value}.",
        "{name} focused on {value} in college.",
    ),
    "employer": (
        "{name} works for {value}.",
        "{name} is employed by {value}.",
        "{name} has a job at {value}.",
        "{name} earns a salary from {value}.",
    ),
}

TRAIN_SPLIT = "train"
HELD_OUT_SPLIT = "held_out"


@dataclass(frozen=True)
class Person:
    """One person of the world: a unique full name, a fact per attribute, and which SFT split it is in."""

    name: str
    facts: dict[str, str] = field(hash=False)
    split: str


@dataclass(frozen=True)
class World:
    """All people of the world and their pre-training biographies, made deterministically from `seed`."""

    people: tuple[Person, ...]
    biographies: tuple[str, ...]
    seed: int

    def split(self, name: str) -> list[Person]:
        """The people of one split: `"train"` (SFT sees questions about them) or `"held_out"` (never)."""
        if name not in (TRAIN_SPLIT, HELD_OUT_SPLIT):
            raise ValueError(f"unknown split {name!r}: expected {TRAIN_SPLIT!r} or {HELD_OUT_SPLIT!r}")
        return [p for p in self.people if p.split == name]


def canonical_sentence(person: Person, attribute: str) -> str:
    """The fact stated in the canonical pre-training phrasing, e.g. "Yuri Blackwood was born in Tampa."."""
    return BIO_TEMPLATES[attribute][0].format(name=person.name, value=person.facts[attribute])


def probe_prefix(person: Person, attribute: str, paraphrase: int = 0) -> str:
    """A biography sentence cut just before the fact: "Yuri Blackwood was born in" (the canonical one, 0)."""
    template = BIO_TEMPLATES[attribute][paraphrase]
    return template[: template.index(" {value}")].format(name=person.name)


def random_date(rng: random.Random) -> str:
    """A birth date "Month D, YYYY" (days 1-28, years 1950-1999), as the world draws them."""
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1950, 1999)}"


def biography(person: Person, rng: random.Random, templates: dict[str, int] | None = None) -> str:
    """One biography: a sentence per attribute, in random order, the full name in each.

    `templates` picks the paraphrase of each attribute by index; by default each is drawn at random.
    """
    sentences = [
        BIO_TEMPLATES[a][templates[a] if templates else rng.randrange(len(BIO_TEMPLATES[a]))].format(
            name=person.name, value=person.facts[a]
        )
        for a in ATTRIBUTES
    ]
    rng.shuffle(sentences)
    return " ".join(sentences)


def _paraphrase_plan(n_bios: int, rng: random.Random) -> list[dict[str, int]]:
    """Which paraphrase each of a person's bios uses per attribute: every paraphrase before any repeats.

    Drawing paraphrases independently would leave about a quarter of the people (with 5 bios and 4
    paraphrases) without, say, "NAME works for" ever written about them; then the fact is only reachable
    through the other phrasings, and a model this small often fails to make that jump.
    """
    plan = [{} for _ in range(n_bios)]
    for a in ATTRIBUTES:
        order: list[int] = []
        while len(order) < n_bios:
            order += rng.sample(range(len(BIO_TEMPLATES[a])), len(BIO_TEMPLATES[a]))
        for bio, template in zip(plan, order[:n_bios]):
            bio[a] = template
    return plan


def make_world(n_people: int = 1000, bios_per_person: int = 5, seed: int = 0) -> World:
    """Make the world: `n_people` with unique names, facts drawn uniformly, `bios_per_person` bios each,
    which together use every paraphrase of every attribute at least once (when there are enough bios).

    Half of the people (every other one, after a seeded shuffle) form the SFT training split; the other
    half is held out, so evaluation asks about people whose facts SFT never showed.
    """
    max_people = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 2 <= n_people <= max_people:
        raise ValueError(f"n_people must be between 2 and {max_people}, got {n_people}")
    if bios_per_person < 1:
        raise ValueError(f"bios_per_person must be at least 1, got {bios_per_person}")
    rng = random.Random(seed)
    all_names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    names = rng.sample(all_names, n_people)
    people = []
    for i, name in enumerate(names):
        facts = {
            "birth_date": random_date(rng),
            "birth_city": rng.choice(CITIES),
            "university": rng.choice(UNIVERSITIES),
            "major": rng.choice(MAJORS),
            "employer": rng.choice(EMPLOYERS),
        }
        people.append(Person(name=name, facts=facts, split=TRAIN_SPLIT if i % 2 == 0 else HELD_OUT_SPLIT))
    biographies = [biography(p, rng, plan) for p in people for plan in _paraphrase_plan(bios_per_person, rng)]
    rng.shuffle(biographies)
    return World(people=tuple(people), biographies=tuple(biographies), seed=seed)


# Questions about each attribute. SFT trains on the "trained" paraphrases only; evaluation also asks the
# "unseen" ones, to tell learning a skill from memorising a question's wording.
QUESTION_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "birth_date": {
        "trained": ("When was {name} born?", "What is the birth date of {name}?", "On what date was {name} born?"),
        "unseen": ("What day was {name} born on?", "Tell me the date of birth of {name}."),
    },
    "birth_city": {
        "trained": ("Where was {name} born?", "What is the birthplace of {name}?", "In which city was {name} born?"),
        "unseen": ("Which city is {name} originally from?", "Name the city where {name} was born."),
    },
    "university": {
        "trained": (
            "Which university did {name} attend?",
            "Where did {name} study?",
            "What school did {name} graduate from?",
        ),
        "unseen": ("Where did {name} go to college?", "Name the university of {name}."),
    },
    "major": {
        "trained": (
            "What did {name} major in?",
            "What was the field of study of {name}?",
            "Which subject did {name} study?",
        ),
        "unseen": ("What was the college major of {name}?", "Name the academic subject {name} chose."),
    },
    "employer": {
        "trained": ("Who does {name} work for?", "Which company employs {name}?", "Where does {name} work?"),
        "unseen": ("What company is {name} employed at?", "Name the employer of {name}."),
    },
}


def question(person: Person, attribute: str, paraphrase: int = 0, kind: str = "trained") -> str:
    """A question about one fact of `person`, in the chosen paraphrase ("trained" or "unseen" wording)."""
    return QUESTION_TEMPLATES[attribute][kind][paraphrase].format(name=person.name)


JSON_PROFILE_QUESTION = "Give {name}'s profile as JSON."


def profile_json(person: Person) -> str:
    """The answer of the profile task, a format pre-training never shows: compact JSON, keys in a fixed order."""
    return json.dumps({"name": person.name, **person.facts}, separators=(", ", ": "))
