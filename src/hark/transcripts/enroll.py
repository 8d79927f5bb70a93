"""Save a transcript's speaker as an enrolled voice: "this is Alice, remember her".

The diarizer's per-speaker embeddings are not kept with the result, so the voice is
taken again from the recording: the speaker's segments (as the transcript has them)
are cut out of the job's media, joined, reduced to their speech by the VAD, and
embedded by the configured diarizer, exactly as an uploaded enrolment sample is.
The new sample goes to `hark.speakers.service.enroll` (a new profile, or one more
sample for an existing name), and the speaker is named after the profile in a new
transcript revision, in the same transaction.
"""

from __future__ import annotations

import numpy as np

from hark.accounts import policy
from hark.api.state import Principal, ServiceState
from hark.audit.actor import request_actor
from hark.errors import JobPurgedError, NotFoundError
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.speakers import service as speakers
from hark.speakers.embedding import embed_speech
from hark.speakers.models import SpeakerProfile
from hark.speakers.service import NewSample
from hark.transcripts import service
from hark.transcripts.service import Current

# Enough for a stable voice embedding; more only costs time in the API process.
MAX_VOICE_SECONDS = 120.0


class SpeakerNotInTranscriptError(NotFoundError):
    code = "SPEAKER_NOT_FOUND"


def enroll_speaker(state: ServiceState, principal: Principal, job_id: str, speaker_id: str,
                   name: str) -> tuple[SpeakerProfile, Current]:
    name = speakers.validate_name(name)
    with state.db.session() as session:
        current = service.read(session, state.storage, principal.tenant_id, job_id)
        job = service.completed_job(session, principal.tenant_id, job_id)
        # Enrolling names the speaker in this job's transcript: refused before the voice
        # is read and embedded, not after.
        policy.check_manages(principal, job.user_id)
        media_key = job.media_key
    turns = [(s.start, s.end) for s in current.transcript.segments if s.speaker == speaker_id]
    if not turns:
        raise SpeakerNotInTranscriptError(
            f"no segment of this transcript is spoken by {speaker_id!r}", speaker_id=speaker_id)
    if media_key is None:
        # Deleted by a purge or by retention (which keeps the transcript): gone for good,
        # as GET .../media says of it too.
        raise JobPurgedError("the job's recording was deleted (purged); enrol the voice "
                             "from a recording instead (POST /api/v1/speakers)",
                             status="purged")
    with state.storage.local_path(media_key) as path:
        _, audio = load_audio(path, max_seconds=state.settings.max_audio_seconds)
    voice = _cut(audio, turns)
    embedding, seconds = embed_speech(voice, state.settings, source="this speaker",
                                      field="speaker_id")
    sample = NewSample(embedding=embedding, speech_seconds=seconds,
                       embedder=state.settings.diarizer,
                       source=f"{current.filename} ({speaker_id})")
    with state.db.session(write=True) as session:
        profile = speakers.enroll(session, principal.tenant_id, name, [sample],
                                  actor=request_actor(principal))
        named, _ = service.name_speaker(session, state.storage, principal, job_id, speaker_id,
                                        profile.name, profile.id)
    return profile, named


def _cut(audio: np.ndarray, turns: list[tuple[float, float]]) -> np.ndarray:
    pieces, total = [], 0
    limit = int(MAX_VOICE_SECONDS * SAMPLE_RATE)
    for start, end in turns:
        piece = audio[max(int(start * SAMPLE_RATE), 0):max(int(end * SAMPLE_RATE), 0)]
        piece = piece[:limit - total]
        if piece.size:
            pieces.append(piece)
            total += piece.size
        if total >= limit:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
