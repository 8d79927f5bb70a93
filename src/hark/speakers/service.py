"""Enrolling, listing and removing voice profiles, and handing them to the pipeline.

Functions here take the session first, change and flush, and never commit: the
caller's edge (a CLI command, a request) owns the transaction, so an enrolment of
several samples is stored entirely or not at all.

Names are unique per tenant (a database constraint): enrolling a name that exists
adds the new samples to that profile rather than making a second one.

Enrolling, adding samples and deleting record an audit event in the same transaction.
The events name the profile by id only, never the person's name: removing a profile is
often someone asking to be forgotten, and the audit log keeps what it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hark.audit import service as audit
from hark.audit.actor import Actor
from hark.audit.models import SPEAKER_DELETED, SPEAKER_ENROLLED, SPEAKER_SAMPLES_ADDED
from hark.errors import (
    EmbeddingMismatchError,
    InsufficientSpeechError,
    OptionError,
    SpeakerNotFoundError,
)
from hark.pipeline.diarization.identify import VoiceProfile, unit
from hark.speakers.models import SpeakerProfile, VoiceSample, decode_vector, encode_vector
from hark.speakers.repository import SpeakerProfileRepository

# Below this, an embedding says more about the microphone and the words than the voice.
MIN_SPEECH_SECONDS = 3.0
MAX_NAME_LENGTH = 200
MAX_SOURCE_LENGTH = 255


@dataclass(frozen=True)
class NewSample:
    """One recording's voice embedding, ready to store."""

    embedding: np.ndarray
    speech_seconds: float
    embedder: str
    source: str | None = None


def validate_name(name: str) -> str:
    """The name as stored: surrounding whitespace removed; empty or overlong refused."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise OptionError("a speaker name must not be empty", field="name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise OptionError(f"a speaker name must be at most {MAX_NAME_LENGTH} characters",
                          field="name")
    return cleaned


def centroid(embeddings: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Unit-length mean of unit-length `embeddings`, each weighted by its speech seconds."""
    stacked = np.stack([unit(np.asarray(e, dtype=np.float64)) for e in embeddings])
    mean = np.asarray(weights, dtype=np.float64) @ stacked
    return unit(mean).astype(np.float32)


def enroll(
    session: Session, tenant_id: str, name: str, samples: Sequence[NewSample], *,
    actor: Actor,
) -> SpeakerProfile:
    """Create the profile `name` in the tenant from `samples`, or add them to it."""
    profile, created = _create_or_extend(session, tenant_id, validate_name(name), samples,
                                         actor.user_id)
    audit.record(session, actor, tenant_id=tenant_id, action=SPEAKER_ENROLLED,
                 target_type="speaker", target_id=profile.id,
                 details={"created": created, "samples": len(samples)})
    return profile


def _create_or_extend(
    session: Session, tenant_id: str, name: str, samples: Sequence[NewSample],
    created_by: str | None,
) -> tuple[SpeakerProfile, bool]:
    """The profile `name` with `samples` added, and whether it was made just now."""
    _check_samples(samples)
    repository = SpeakerProfileRepository(session)
    # The lock keeps a concurrent enrolment from recomputing the centroid without ours.
    profile = repository.get_by_name(tenant_id, name, lock=True)
    if profile is None:
        created = _try_create(session, tenant_id, name, samples, created_by)
        if created is not None:
            return created, True
        # The same name was created concurrently and committed; join it.
        profile = repository.get_by_name(tenant_id, name, lock=True)
        assert profile is not None
    _append(session, profile, samples)
    return profile, False


def add_samples(
    session: Session, tenant_id: str, profile_id: str, samples: Sequence[NewSample], *,
    actor: Actor,
) -> SpeakerProfile:
    """Add `samples` to an existing profile and recompute its centroid."""
    _check_samples(samples)
    profile = SpeakerProfileRepository(session).get(tenant_id, profile_id, lock=True)
    if profile is None:
        raise _not_found(profile_id)
    _append(session, profile, samples)
    audit.record(session, actor, tenant_id=tenant_id, action=SPEAKER_SAMPLES_ADDED,
                 target_type="speaker", target_id=profile.id,
                 details={"samples": len(samples)})
    return profile


def list_profiles(session: Session, tenant_id: str) -> list[SpeakerProfile]:
    return SpeakerProfileRepository(session).list_profiles(tenant_id)


def get_profile(session: Session, tenant_id: str, profile_id: str) -> SpeakerProfile:
    profile = SpeakerProfileRepository(session).get(tenant_id, profile_id)
    if profile is None:
        raise _not_found(profile_id)
    return profile


def find_profile(session: Session, tenant_id: str, id_or_name: str) -> SpeakerProfile:
    """The profile with this id, else the one with this name."""
    repository = SpeakerProfileRepository(session)
    profile = repository.get(tenant_id, id_or_name) or repository.get_by_name(
        tenant_id, " ".join(id_or_name.split()))
    if profile is None:
        raise SpeakerNotFoundError(f"no speaker profile with id or name {id_or_name!r}",
                                   profile=id_or_name)
    return profile


def delete_profile(session: Session, tenant_id: str, id_or_name: str, *,
                   actor: Actor) -> SpeakerProfile:
    """Remove a profile and its samples; returns what was removed."""
    profile = find_profile(session, tenant_id, id_or_name)
    SpeakerProfileRepository(session).delete(profile)
    session.flush()
    audit.record(session, actor, tenant_id=tenant_id, action=SPEAKER_DELETED,
                 target_type="speaker", target_id=profile.id)
    return profile


def profiles_for_matching(
    session: Session, tenant_id: str, embedder: str | None = None
) -> list[VoiceProfile]:
    """The tenant's profiles as the pipeline compares them with diarized speakers.

    Pass the diarizer's name as `embedder` to leave out profiles made by another
    model, whose vectors would be meaningless (or of another size) beside its own.
    """
    return [
        VoiceProfile(id=p.id, name=p.name, embedding=p.centroid_vector)
        for p in SpeakerProfileRepository(session).list_profiles(tenant_id, embedder)
    ]


def _try_create(
    session: Session, tenant_id: str, name: str, samples: Sequence[NewSample],
    created_by: str | None,
) -> SpeakerProfile | None:
    """The new profile, or None when another transaction took the name first."""
    first = samples[0]
    profile = SpeakerProfile(
        tenant_id=tenant_id, name=name, embedder=first.embedder,
        dimension=int(np.asarray(first.embedding).size), created_by=created_by,
    )
    profile.samples = [_sample(s) for s in samples]
    _refresh(profile)
    try:
        # A savepoint, so losing a race for the name costs only this insert.
        with session.begin_nested():
            SpeakerProfileRepository(session).add(profile)
    except IntegrityError:
        if SpeakerProfileRepository(session).get_by_name(tenant_id, name) is None:
            raise
        return None
    return profile


def _append(session: Session, profile: SpeakerProfile, samples: Sequence[NewSample]) -> None:
    first = samples[0]
    if first.embedder != profile.embedder:
        raise EmbeddingMismatchError(
            f"{profile.name!r} was enrolled with {profile.embedder}; these samples come "
            f"from {first.embedder}. Remove the profile and enrol it again.",
            profile_id=profile.id, embedder=profile.embedder)
    if np.asarray(first.embedding).size != profile.dimension:
        raise EmbeddingMismatchError(
            f"{profile.name!r} holds {profile.dimension}-dimensional embeddings; these "
            f"have {np.asarray(first.embedding).size}", profile_id=profile.id)
    profile.samples.extend(_sample(s) for s in samples)
    _refresh(profile)
    session.flush()


def _refresh(profile: SpeakerProfile) -> None:
    samples = profile.samples
    profile.centroid = encode_vector(
        centroid([decode_vector(s.embedding) for s in samples],
                 [s.speech_seconds for s in samples]))
    profile.sample_count = len(samples)
    profile.speech_seconds = round(sum(s.speech_seconds for s in samples), 3)


def _sample(sample: NewSample) -> VoiceSample:
    source = sample.source
    if source is not None and len(source) > MAX_SOURCE_LENGTH:
        source = "…" + source[-(MAX_SOURCE_LENGTH - 1):]
    return VoiceSample(
        embedding=encode_vector(unit(np.asarray(sample.embedding, dtype=np.float64))),
        speech_seconds=round(float(sample.speech_seconds), 3), source=source,
    )


def _not_found(profile_id: str) -> SpeakerNotFoundError:
    return SpeakerNotFoundError(f"no speaker profile with id {profile_id}",
                                profile_id=profile_id)


def _check_samples(samples: Sequence[NewSample]) -> None:
    if not samples:
        raise OptionError("enrolment needs at least one voice sample", field="samples")
    first = samples[0]
    for sample in samples:
        vector = np.asarray(sample.embedding)
        label = sample.source or "a sample"
        if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)) \
                or not np.any(vector):
            raise OptionError(f"{label}: the voice embedding is empty or not finite",
                              field="samples")
        if sample.speech_seconds < MIN_SPEECH_SECONDS:
            raise InsufficientSpeechError(
                f"{label}: only {sample.speech_seconds:.1f} s of speech; enrolment needs at "
                f"least {MIN_SPEECH_SECONDS:.0f} s of one person speaking",
                field="samples", speech_seconds=round(sample.speech_seconds, 2))
        if sample.embedder != first.embedder or vector.size != np.asarray(first.embedding).size:
            raise EmbeddingMismatchError("all samples of one enrolment must come from the "
                                         "same embedder")
