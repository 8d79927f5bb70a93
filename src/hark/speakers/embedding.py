"""Turning an enrolment recording into a voice embedding.

Only the speech counts: silence and noise between phrases would pull the
embedding towards the room rather than the voice, and would make a recording look
long enough to enrol when it holds only a word or two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hark.config import Settings
from hark.errors import InsufficientSpeechError, MediaError
from hark.filenames import about_file
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.diarization.identify import unit
from hark.pipeline.diarization.select import borrow_diarizer
from hark.pipeline.vad import VadOptions, detect_speech
from hark.speakers.service import MIN_SPEECH_SECONDS, NewSample

_REGION_SECONDS = 15.0


def embed_recording(path: str | Path, settings: Settings) -> tuple[np.ndarray, float]:
    """The unit-length voice embedding of one person's recording, and its seconds of speech.

    Raises InsufficientSpeechError, before loading any speaker model, when the
    recording holds less than MIN_SPEECH_SECONDS of speech.
    """
    _, audio = load_audio(path, max_seconds=settings.max_audio_seconds)
    return embed_speech(audio, settings, source=Path(path).name, field="file")


def embed_speech(audio: np.ndarray, settings: Settings, *, source: str,
                 field: str) -> tuple[np.ndarray, float]:
    """The unit-length voice embedding of the speech in `audio` (one person's), and its
    seconds of speech; too little speech is an InsufficientSpeechError naming `source`
    and `field`, raised before any speaker model is loaded."""
    regions = detect_speech(audio, VadOptions(), _REGION_SECONDS) if audio.size else []
    speech = (np.concatenate([audio[r.start:r.end] for r in regions]) if regions
              else np.zeros(0, dtype=np.float32))
    seconds = speech.size / SAMPLE_RATE
    if seconds < MIN_SPEECH_SECONDS:
        raise InsufficientSpeechError(
            f"{source} holds {seconds:.1f} s of speech; a voice profile needs at least "
            f"{MIN_SPEECH_SECONDS:.0f} s of one person speaking",
            field=field, speech_seconds=round(seconds, 2))
    with borrow_diarizer(settings) as diarizer:
        embedding = diarizer.embed(speech)
    return unit(np.asarray(embedding, dtype=np.float64)).astype(np.float32), round(seconds, 3)


def sample_from_recording(path: str | Path, settings: Settings) -> NewSample:
    """A sample ready for `service.enroll`, labelled with the file name and the diarizer."""
    embedding, seconds = embed_recording(path, settings)
    return NewSample(embedding=embedding, speech_seconds=seconds, embedder=settings.diarizer,
                     source=Path(path).name)


# A voice says all it has to say in a minute or two; a longer "sample" is most likely
# the wrong file, and decoding hours of audio would weigh on the API process.
MAX_UPLOAD_SAMPLE_SECONDS = 600.0


def sample_from_upload(
    path: Path, settings: Settings, *, filename: str, field: str = "files",
    max_seconds: float = MAX_UPLOAD_SAMPLE_SECONDS,
) -> NewSample:
    """A sample from an uploaded file kept at `path` under a name of the server's choosing.

    Errors name the client's `filename` and the form `field` instead of the stored
    file, whose name and location mean nothing to the client (and are not its business).
    """
    limit = min(settings.max_audio_seconds, max_seconds)
    limited = settings.model_copy(update={"max_audio_seconds": limit})
    try:
        embedding, seconds = embed_recording(path, limited)
    except (MediaError, InsufficientSpeechError) as exc:
        raise about_file(exc, path.name, filename, field=field, filename=filename) from exc
    return NewSample(embedding=embedding, speech_seconds=seconds, embedder=settings.diarizer,
                     source=filename)
