"""Contamination check: which evaluation rows share long word n-grams with the training data.

A test row whose text (or a long piece of it) also sits in the training data measures memory, not skill. The
standard check (GPT-3's and Llama 2's contamination studies; n = 8 to 13 words) breaks every text into
word n-grams after normalising case and punctuation, and flags an evaluation row when a large share of its
n-grams occur anywhere in the training texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: punctuation and spacing do not hide a copy."""
    return WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of `text`; a text shorter than `n` words is one n-gram of all its words."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    w = words(text)
    if not w:
        return set()
    if len(w) < n:
        return {tuple(w)}
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def contamination_report(train_texts: Iterable[str], eval_texts: list[str], n: int = 8, threshold: float = 0.5) -> dict:
    """For each evaluation text, the share of its word n-grams found in any training text.

    Returns `overlap` (one share per evaluation text), `flagged` (indices of texts whose share is at least
    `threshold`), `contaminated_rate` (their share of the evaluation set) and the settings. An evaluation text
    with no words has overlap 0.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    seen: set[tuple[str, ...]] = set()
    for text in train_texts:
        seen |= ngrams(text, n)
    overlap = []
    for text in eval_texts:
        grams = ngrams(text, n)
        overlap.append(len(grams & seen) / len(grams) if grams else 0.0)
    flagged = [i for i, share in enumerate(overlap) if share >= threshold]
    return {
        "n": n,
        "threshold": threshold,
        "overlap": overlap,
        "flagged": flagged,
        "contaminated_rate": len(flagged) / len(eval_texts) if eval_texts else 0.0,
    }
