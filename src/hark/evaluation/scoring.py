"""Text normalisation and error rates.

English text is normalised the way Whisper's evaluation does (whisper-normalizer's
port of its English normaliser: case, punctuation, spelled-out numbers, `mr` →
`mister`, British spellings, fillers removed); other languages get its basic
normaliser. Languages written without spaces are scored by characters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import jiwer

CHARACTER_LANGUAGES = frozenset({"ja", "ko", "zh", "yue", "th", "lo", "my"})


@cache
def _normalizer(language: str) -> Callable[[str], str]:
    if language == "en":
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()  # type: ignore[no-any-return]
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()  # type: ignore[no-any-return]


def uses_characters(language: str) -> bool:
    return language in CHARACTER_LANGUAGES


def normalize(text: str, language: str) -> str:
    normalized = " ".join(_normalizer(language)(text).split())
    if uses_characters(language):
        # Space-free scripts: score every character, ignoring spaces.
        return " ".join(normalized.replace(" ", ""))
    return normalized


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        return self.errors / self.reference_length if self.reference_length else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference_length + other.reference_length,
        )


ZERO = ErrorCounts(0, 0, 0, 0)


def count_errors(reference: str, hypothesis: str, language: str) -> ErrorCounts:
    """Word (or character) errors of `hypothesis` against `reference`, both normalised here."""
    ref = normalize(reference, language)
    hyp = normalize(hypothesis, language)
    ref_len = len(ref.split())
    if ref_len == 0:
        return ErrorCounts(0, 0, len(hyp.split()), 0)
    if not hyp:
        return ErrorCounts(0, ref_len, 0, ref_len)
    out = jiwer.process_words(ref, hyp)
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, ref_len)


def total(counts: Sequence[ErrorCounts]) -> ErrorCounts:
    result = ZERO
    for c in counts:
        result = result + c
    return result
