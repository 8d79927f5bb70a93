"""Known speakers sent with a request: audio data URLs turned into one-off voice profiles.

OpenAI's `known_speaker_references[]` are short clips (2-10 s) of each person as
`data:audio/wav;base64,…` URLs. Each is decoded to a temporary file, its speech found
by VAD and embedded with the same voice encoder the diarizer uses, and the embeddings
travel with the job; nothing is stored as an enrolled profile.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hark.config import Settings
from hark.errors import MediaError
from hark.jobs.schemas import KnownSpeaker
from hark.openai_api.schemas import InvalidFieldError
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.diarization.identify import unit
from hark.pipeline.diarization.select import borrow_diarizer
from hark.pipeline.vad import VadOptions, detect_speech

PARAM = "known_speaker_references"
# A reference's data URL is a form field held in memory: about 3 MiB of audio at most.
MAX_REFERENCE_FIELD_BYTES = 4 * 1024 * 1024
MAX_REFERENCE_SECONDS = 60.0
# OpenAI takes clips from 2 s; an enrolled profile asks for more (3 s of speech), but a
# one-off reference is only ever compared with the speakers of one recording.
MIN_REFERENCE_SPEECH_SECONDS = 1.0
_REGION_SECONDS = 15.0
_DATA_URL = re.compile(r"data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*),(?P<data>.*)",
                       re.DOTALL)


def _invalid(index: int, message: str) -> InvalidFieldError:
    return InvalidFieldError(f"{PARAM}[{index}] {message}", field=PARAM, index=index)


def decode_data_url(value: str, index: int) -> bytes:
    """The bytes of a base64 `data:` URL (the only form OpenAI's API takes)."""
    match = _DATA_URL.fullmatch(value.strip())
    if match is None:
        raise _invalid(index, "must be a data URL (data:audio/wav;base64,...)")
    if "base64" not in [p.strip().lower() for p in match["params"].split(";")]:
        raise _invalid(index, "must be base64-encoded (data:<type>;base64,...)")
    try:
        data = base64.b64decode("".join(match["data"].split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(index, "is not valid base64") from None
    if not data:
        raise _invalid(index, "is empty")
    return data


def embed_reference(path: Path, settings: Settings, index: int) -> np.ndarray:
    """The unit-length voice embedding of the speech in one reference clip."""
    try:
        _, audio = load_audio(path, max_seconds=min(settings.max_audio_seconds,
                                                    MAX_REFERENCE_SECONDS))
    except MediaError as exc:
        message = exc.message.replace(str(path), "it").replace(repr(path.name), "it")
        raise _invalid(index, f"is not usable audio: {message}") from exc
    regions = detect_speech(audio, VadOptions(), _REGION_SECONDS)
    speech = (np.concatenate([audio[r.start:r.end] for r in regions]) if regions
              else np.zeros(0, dtype=np.float32))
    seconds = speech.size / SAMPLE_RATE
    if seconds < MIN_REFERENCE_SPEECH_SECONDS:
        raise _invalid(index, f"holds {seconds:.1f} s of speech; at least "
                              f"{MIN_REFERENCE_SPEECH_SECONDS:.0f} s of one person speaking "
                              "is needed")
    with borrow_diarizer(settings) as diarizer:
        embedding = diarizer.embed(speech)
    return unit(np.asarray(embedding, dtype=np.float64))


def known_speakers(pairs: Sequence[tuple[str, str]], settings: Settings) -> list[KnownSpeaker]:
    """One profile per (name, data URL); blocking (decoding, the voice encoder)."""
    speakers: list[KnownSpeaker] = []
    with tempfile.TemporaryDirectory(prefix="hark-known-speakers-") as folder:
        for index, (name, url) in enumerate(pairs):
            path = Path(folder) / f"reference-{index}"
            path.write_bytes(decode_data_url(url, index))
            embedding = embed_reference(path, settings, index)
            speakers.append(KnownSpeaker(
                name=name, embedding=[round(float(x), 6) for x in embedding]))
            path.unlink()
    return speakers
