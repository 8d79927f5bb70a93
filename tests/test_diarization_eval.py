"""Scoring diarization beyond DER: overlap miss and speaker-count accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from hark.evaluation.diarization import (
    DiarizationItem,
    DiarizationResult,
    count_accuracy,
    overlap_miss,
    pooled_overlap_miss,
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
