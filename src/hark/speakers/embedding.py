"""Turning an enrolment recording into a voice embedding.

Only the speech counts: silence and noise between phrases would pull the
embedding towards the room rather than the voice, and would make a recording look
long enough to enrol when it holds only a word or two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hark.config import Settings
from hark.errors import InsufficientSpeechError
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
    regions = detect_speech(audio, VadOptions(), _REGION_SECONDS)
    speech = (np.concatenate([audio[r.start:r.end] for r in regions]) if regions
              else np.zeros(0, dtype=np.float32))
    seconds = speech.size / SAMPLE_RATE
    if seconds < MIN_SPEECH_SECONDS:
        raise InsufficientSpeechError(
            f"{Path(path).name} holds {seconds:.1f} s of speech; enrolment needs at least "
            f"{MIN_SPEECH_SECONDS:.0f} s of one person speaking",
            field="file", speech_seconds=round(seconds, 2))
    with borrow_diarizer(settings) as diarizer:
        embedding = diarizer.embed(speech)
    return unit(np.asarray(embedding, dtype=np.float64)).astype(np.float32), round(seconds, 3)


def sample_from_recording(path: str | Path, settings: Settings) -> NewSample:
    """A sample ready for `service.enroll`, labelled with the file name and the diarizer."""
    embedding, seconds = embed_recording(path, settings)
    return NewSample(embedding=embedding, speech_seconds=seconds, embedder=settings.diarizer,
                     source=Path(path).name)
