"""Scoring diarization beyond DER: overlap miss, speaker-count accuracy and the
word-speaker error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hark.evaluation.diarization import (
    DiarizationItem,
    DiarizationResult,
    count_accuracy,
    overlap_miss,
    pooled_overlap_miss,
    speaker_mapping,
    word_speaker_errors,
)
from hark.pipeline.diarization.base import Diarization, SpeakerTurn

# A talks 0-10 s, B 8-14 s: two seconds of overlap.
REFERENCE = [(0.0, 10.0, "A"), (8.0, 14.0, "B")]


def test_overlap_marked_in_full_misses_nothing() -> None:
    hypothesis = Diarization([SpeakerTurn(0.0, 10.0, "x"), SpeakerTurn(8.0, 14.0, "y")])
    assert overlap_miss(REFERENCE, hypothesis, (0.0, 14.0)) == pytest.approx((2.0, 0.0))


def test_overlap_given_to_one_voice_is_missed_where_it_is() -> None:
    # The change is put at 9 s: 8-9 s and 9-10 s are each one voice only.
    hypothesis = Diarization([SpeakerTurn(0.0, 9.0, "x"), SpeakerTurn(9.0, 14.0, "y")])
    assert overlap_miss(REFERENCE, hypothesis, (0.0, 14.0)) == pytest.approx((2.0, 2.0))
    # Half of it marked as two voices.
    hypothesis = Diarization([SpeakerTurn(0.0, 10.0, "x"), SpeakerTurn(9.0, 14.0, "y")])
    assert overlap_miss(REFERENCE, hypothesis, (0.0, 14.0)) == pytest.approx((2.0, 1.0))


def test_one_speaker_twice_over_the_same_time_is_not_overlap() -> None:
    reference = [(0.0, 5.0, "A"), (3.0, 6.0, "A")]
    hypothesis = Diarization([SpeakerTurn(0.0, 6.0, "x")])
    assert overlap_miss(reference, hypothesis, (0.0, 6.0)) == (0.0, 0.0)


def test_overlap_outside_the_scored_region_is_not_counted() -> None:
    hypothesis = Diarization([SpeakerTurn(0.0, 14.0, "x")])
    assert overlap_miss(REFERENCE, hypothesis, (0.0, 9.0)) == pytest.approx((1.0, 1.0))


def _result(found: int, reference: int, overlap: float, missed: float,
            error: str | None = None) -> DiarizationResult:
    item = DiarizationItem("x", Path("x.wav"), Path("x.rttm"), None, None)
    return DiarizationResult(item, reference, found, overlap_seconds=overlap,
                             overlap_missed_seconds=missed, error=error)


def test_pooled_counts_and_overlap_leave_failed_items_out() -> None:
    results = [_result(2, 2, 4.0, 1.0), _result(3, 2, 6.0, 4.0), _result(1, 1, 0.0, 0.0),
               _result(0, 0, 10.0, 10.0, error="CORRUPT_MEDIA: bad")]
    assert count_accuracy(results) == pytest.approx(2 / 3)
    assert pooled_overlap_miss(results) == pytest.approx(0.5)
    assert pooled_overlap_miss([_result(1, 1, 0.0, 0.0)]) is None


def test_mapping_is_one_to_one_by_shared_time() -> None:
    # x shares 8 s with A and 2 s with B; y shares 4 s with B; z only 1 s with A.
    hypothesis = [(0.0, 8.0, "x"), (8.0, 10.0, "x"), (10.0, 14.0, "y"), (14.0, 15.0, "z")]
    reference = [(0.0, 8.0, "A"), (8.0, 14.0, "B"), (14.0, 15.0, "A")]
    assert speaker_mapping(reference, hypothesis) == {"x": "A", "y": "B"}
    assert speaker_mapping(reference, []) == {}


def test_mapping_leaves_out_a_speaker_sharing_no_time() -> None:
    assert speaker_mapping([(0.0, 5.0, "A"), (5.0, 9.0, "B")],
                           [(0.0, 5.0, "x"), (10.0, 12.0, "y")]) == {"x": "A"}


def test_word_speaker_errors_count_wrong_and_unassigned_words() -> None:
    words: list[tuple[float, float, str | None]] = [
        (0.5, 1.0, "x"),    # A: right
        (7.6, 8.2, "x"),    # mostly A (0.4 s) against B: right
        (8.5, 9.0, "x"),    # B: wrong
        (11.0, 11.5, "y"),  # B: right
        (12.0, 12.5, None),  # B, but nobody given: wrong
        (20.0, 20.5, "y"),  # nobody talks: not scored
    ]
    reference = [(0.0, 8.0, "A"), (8.0, 14.0, "B")]
    assert word_speaker_errors(reference, words, {"x": "A", "y": "B"}) == (2, 5)
