"""How close a read is to the truth: edit distance and character error rate."""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """The fewest single-character insertions, deletions and substitutions turning ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(predicted: str, truth: str) -> float:
    """Character error rate: edit distance over the truth's length (lines joined by newlines)."""
    if not truth:
        return 0.0 if not predicted else 1.0
    return levenshtein(predicted, truth) / len(truth)
