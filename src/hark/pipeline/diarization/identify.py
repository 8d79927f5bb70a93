"""Naming diarized speakers after enrolled voice profiles.

Each diarized speaker is compared with every profile by cosine similarity; the
pairing that maximises total similarity is chosen (so two speakers never share a
profile), and a pairing below the threshold leaves the speaker unnamed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoiceProfile:
    id: str
    name: str
    embedding: np.ndarray


@dataclass(frozen=True)
class SpeakerMatch:
    profile_id: str
    name: str
    similarity: float


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def match_speakers(
    speakers: Mapping[str, np.ndarray], profiles: Sequence[VoiceProfile], threshold: float
) -> dict[str, SpeakerMatch]:
    """Speaker id → matched profile, for the speakers that match one above `threshold`."""
    from scipy.optimize import linear_sum_assignment

    if not speakers or not profiles:
        return {}
    ids = list(speakers)
    a = np.stack([unit(np.asarray(speakers[i], dtype=np.float64)) for i in ids])
    b = np.stack([unit(np.asarray(p.embedding, dtype=np.float64)) for p in profiles])
    similarity = a @ b.T
    rows, cols = linear_sum_assignment(-similarity)
    matches: dict[str, SpeakerMatch] = {}
    for row, col in zip(rows, cols, strict=True):
        score = float(similarity[row, col])
        if score >= threshold:
            profile = profiles[col]
            matches[ids[row]] = SpeakerMatch(profile.id, profile.name, round(score, 4))
    return matches
