"""The n-gram contamination check: it finds a planted leak, ignores case and punctuation, and rejects bad settings."""

import pytest

from sft_course.contamination import contamination_report, ngrams, words


def test_words_and_ngrams_ignore_case_and_punctuation():
    assert words("Yuri Blackwood was born in Tampa.") == ["yuri", "blackwood", "was", "born", "in", "tampa"]
    assert ngrams("A b, C d!", 2) == {("a", "b"), ("b", "c"), ("c", "d")}
    assert ngrams("a b", 5) == {("a", "b")}  # shorter than n: one n-gram of every word
    assert ngrams("...", 3) == set()
    with pytest.raises(ValueError, match="at least 1"):
        ngrams("a b", 0)


def test_a_planted_leak_is_flagged_and_clean_rows_are_not():
    train = [
        "Yuri Blackwood was born in Tampa and studied at Duke University in the spring of his life.",
        "Ada Lovelace works for Intel as an engineer on the new compiler team in Austin.",
    ]
    clean = "Which company employs Grace Hopper, who was born in New York and studied at Yale?"
    leaked = "Tell me: Yuri Blackwood was born in Tampa and studied at Duke University in the spring."
    report = contamination_report(train, [clean, leaked], n=8)
    assert report["flagged"] == [1]
    assert report["overlap"][0] == 0.0 and report["overlap"][1] > 0.5
    assert report["contaminated_rate"] == 0.5


def test_threshold_is_checked():
    with pytest.raises(ValueError, match="threshold"):
        contamination_report(["a"], ["a"], threshold=0.0)
