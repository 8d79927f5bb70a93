"""The voices of the diarization development set, and the speech each one has to say.

Real voices are the single-speaker recordings of the speech corpus (read at run time,
never copied), grouped by person; synthetic voices are espeak-ng voices that differ
in accent, pitch, rate and timbre. Every voice belongs to one half of the set: the
"tune" half, on which the diarizer's parameters are chosen, or the "held" half, on
which they are reported and never tuned. The split was fixed before any tuning,
balancing the two halves by amount of audio and language.

The corpus's two diarization clips (and `pyannote_sample`, the same recording as one
of them) are not used: they are an evaluation of their own.

Where a voice speaks: Silero's speech probability on the clean single-speaker
source, entered at 0.5 and left below 0.35, with pauses shorter than
`BRIDGE_SECONDS` counted as speech. That is the reference activity of every piece
placed in a conversation, so the reference turns are exact up to Silero's 32 ms
frames on clean audio.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from hark.pipeline.audio import SAMPLE_RATE, load_audio
from tests.support.devset_channel import NARROWBAND_HZ, bandwidth, flatten

Span = tuple[float, float]

# Pauses shorter than this inside one person's speech are part of the turn.
BRIDGE_SECONDS = 0.3
# Every piece is scaled so that its speech has this level before conversation gains.
_SPEECH_DBFS = -26.0
_MARGIN_SECONDS = 0.05
# A turn never spans a longer silence than this of its source.
_MAX_INNER_PAUSE = 1.0


@dataclass(frozen=True)
class Voice:
    name: str
    half: str
    language: str
    # Corpus item ids (real voices), or the espeak-ng voice and its pitch and rate.
    corpus_ids: tuple[str, ...] = ()
    espeak: str = ""
    pitch: int = 50
    rate: int = 165
    # Voices that might be one person never meet in a conversation.
    apart: str = ""

    @property
    def synthetic(self) -> bool:
        return bool(self.espeak)


def _ids(prefix: str, *suffixes: str) -> tuple[str, ...]:
    return tuple(prefix + s for s in suffixes)


REAL_VOICES = (
    # The tuning half.
    Voice("sonnet_reader", "tune", "en", _ids("librivox_shakespeare_sonnet_", "001", "002")),
    Voice("harvard_reader", "tune", "en", ("osr_us_000_0034_8k",)),
    Voice("austen_reader", "tune", "en",
          _ids("librivox_sense_and_sensibility_", "0870", "0880", "0890", "0920", "0930"),
          apart="austen-61"),
    Voice("librispeech_61", "tune", "en", ("librispeech_61-70968-0000",), apart="austen-61"),
    Voice("librispeech_3752", "tune", "en", _ids("librispeech_3752-4944-", "0000", "0001",
                                                 "0002")),
    Voice("kennedy", "tune", "en", ("jfk_inaugural_1961",)),
    Voice("picovoice_es", "tune", "es", ("picovoice_es",)),
    Voice("picovoice_it", "tune", "it", ("picovoice_it",)),
    Voice("picovoice_ja", "tune", "ja", ("picovoice_ja",)),
    Voice("mls_es", "tune", "es", ("mls_es_13697_11991_000000",)),
    Voice("commonvoice_ja", "tune", "ja", ("commonvoice_ja_24511055",)),
    # The held-back half.
    Voice("simplicissimus_reader", "held", "de", ("librivox_de_long",)),
    Voice("capitan_veneno_reader", "held", "es", ("librivox_es_long",)),
    Voice("ljspeech", "held", "en", _ids("ljspeech_LJ001-000", *"12345678")),
    Voice("mfa_speaker", "held", "en", ("mfa_acoustic_corpus",)),
    Voice("librispeech_1988", "held", "en", _ids("librispeech_1988-24833-", "0000", "0001",
                                                 "0002", "0003")),
    Voice("swedish_speaker", "held", "sv", _ids("sv_se10x016-08071999-1334_u001600", "2", "3",
                                                "4")),
    Voice("librispeech_1272", "held", "en", ("librispeech_1272-128104-0000",),
          apart="1272-de"),
    Voice("picovoice_de", "held", "de", ("picovoice_de",), apart="1272-de"),
    Voice("picovoice_pt", "held", "pt", ("picovoice_pt",)),
    Voice("picovoice_ko", "held", "ko", ("picovoice_ko",)),
)

# espeak-ng renders every voice with one formant synthesiser, so many of its variants
# are one voice to a speaker encoder (and to the ear) whatever the pitch. These twelve
# were picked from 24 candidates so that within each half no two are more alike, in
# Resemblyzer's space over six sentences, than cosine 0.81 (two different real
# readers of the corpus reach 0.79).
SYNTHETIC_VOICES = (
    Voice("espeak_carib_andy", "tune", "en", espeak="en-029+Andy", pitch=55, rate=175),
    Voice("espeak_us_alicia", "tune", "en", espeak="en-us+Alicia", pitch=60, rate=160),
    Voice("espeak_nyc_f3", "tune", "en", espeak="en-us-nyc+f3", pitch=50, rate=175),
    Voice("espeak_midlands_f5", "tune", "en", espeak="en-gb-x-gbcwmd+f5", pitch=75, rate=180),
    Voice("espeak_gb_low", "tune", "en", espeak="en-gb+m5", pitch=20, rate=150),
    Voice("espeak_us_storm", "tune", "en", espeak="en-us+Storm", pitch=45, rate=160),
    Voice("espeak_us_klatt2", "held", "en", espeak="en-us+klatt2", pitch=58, rate=190),
    Voice("espeak_us_m1", "held", "en", espeak="en-us+m1", pitch=40, rate=170),
    Voice("espeak_carib_f4", "held", "en", espeak="en-029+f4", pitch=70, rate=160),
    Voice("espeak_us_m2", "held", "en", espeak="en-us+m2", pitch=60, rate=165),
    Voice("espeak_carib_m7", "held", "en", espeak="en-029+m7", pitch=50, rate=145),
    Voice("espeak_us_f1", "held", "en", espeak="en-us+f1", pitch=85, rate=170),
)

VOICES = REAL_VOICES + SYNTHETIC_VOICES
HALVES = ("tune", "held")

BACKCHANNEL_TEXTS = ("Yeah.", "Mm-hm.", "Right.", "Okay.", "Really?", "Sure.", "I see.",
                     "Oh, wow.", "Exactly.", "Uh-huh.", "No way.", "True.")
# The last few sentences of a synthetic voice are kept for enrolling it.
_ENROLL_SENTENCES = 5
# A real voice with at least this much speech keeps some of it for enrolment.
_ENROLLABLE_SECONDS = 12.0


@dataclass(frozen=True)
class Piece:
    """Speech of one voice: samples at a common level and where in them it speaks."""

    samples: np.ndarray
    speech: tuple[Span, ...]

    @property
    def seconds(self) -> float:
        return int(self.samples.shape[0]) / SAMPLE_RATE

    @property
    def speech_seconds(self) -> float:
        return sum(end - start for start, end in self.speech)


@dataclass
class VoiceMaterial:
    voice: Voice
    turns: list[Piece] = field(default_factory=list)
    backchannels: list[Piece] = field(default_factory=list)
    # Speech never placed in a conversation, for enrolling this voice (None: too little).
    enrollment: Piece | None = None
    # Recorded through a telephone-band channel.
    narrowband: bool = False

    @property
    def speech_seconds(self) -> float:
        return sum(p.speech_seconds for p in self.turns)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speech_activity(samples: np.ndarray, bridge: float = BRIDGE_SECONDS) -> list[Span]:
    """Where a clean one-voice recording speaks (seconds), from Silero's probabilities."""
    from faster_whisper.vad import get_vad_model

    hop = 512
    if samples.shape[0] < hop:
        return []
    padded = np.pad(samples, (0, hop - samples.shape[0] % hop))
    probability = np.asarray(get_vad_model()(padded)).reshape(-1)
    spans: list[Span] = []
    active = False
    start = 0
    for i, p in enumerate(probability):
        if not active and p >= 0.5:
            active, start = True, i
        elif active and p < 0.35:
            active = False
            spans.append((start * hop / SAMPLE_RATE, i * hop / SAMPLE_RATE))
    if active:
        spans.append((start * hop / SAMPLE_RATE, probability.size * hop / SAMPLE_RATE))
    merged: list[Span] = []
    for span in spans:
        if merged and span[0] - merged[-1][1] < bridge:
            merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    end = samples.shape[0] / SAMPLE_RATE
    return [(s, min(e, end)) for s, e in merged if min(e, end) - s >= 0.1]


def level_to_speech(samples: np.ndarray, speech: list[Span]) -> np.ndarray:
    """`samples` scaled so that its speech sits at the common speech level."""
    parts = [samples[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in speech]
    voiced = np.concatenate(parts) if parts else samples
    rms = float(np.sqrt(np.mean(voiced.astype(np.float64) ** 2))) if voiced.size else 0.0
    gain = 10 ** (_SPEECH_DBFS / 20) / rms if rms > 1e-6 else 1.0
    return np.asarray(samples * gain, dtype=np.float32)


def cut(samples: np.ndarray, speech: list[Span], first: Span, last: Span) -> Piece:
    """The stretch of `samples` from span `first` to span `last`, with a short margin."""
    total = samples.shape[0] / SAMPLE_RATE
    start = max(0.0, first[0] - _MARGIN_SECONDS)
    end = min(total, last[1] + _MARGIN_SECONDS)
    inside = tuple((max(s, start) - start, min(e, end) - start)
                   for s, e in speech if e > start and s < end)
    piece = samples[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)]
    return Piece(np.asarray(piece, dtype=np.float32), inside)


def phrases_to_turns(samples: np.ndarray, speech: list[Span]) -> list[Piece]:
    """Each phrase of a recording as a piece, in order."""
    return [cut(samples, speech, span, span) for span in speech]


def short_crops(samples: np.ndarray, limit: float = 1.0) -> list[Piece]:
    """Stretches of a word or two: activity with only tiny pauses bridged."""
    words = speech_activity(samples, bridge=0.08)
    out = []
    for span in words:
        if 0.25 <= span[1] - span[0] <= limit:
            out.append(cut(samples, words, span, span))
    return out


def load_real(voice: Voice, corpus_dir: Path) -> VoiceMaterial:
    rows = {row["id"]: row for row in (json.loads(line) for line in
            (corpus_dir / "asr" / "manifest.jsonl").read_text().splitlines() if line.strip())}
    material = VoiceMaterial(voice)
    recordings = []
    for item in voice.corpus_ids:
        _, samples = load_audio(corpus_dir / rows[item]["audio"])
        speech = speech_activity(samples)
        material.narrowband |= bandwidth(samples) < NARROWBAND_HZ
        recordings.append((level_to_speech(flatten(samples, speech), speech), speech))
    total = sum(e - s for _, speech in recordings for s, e in speech)
    reserve = min(12.0, max(4.0, 0.25 * total)) if total >= _ENROLLABLE_SECONDS else 0.0
    kept: list[Piece] = []
    for samples, speech in recordings:
        pieces = phrases_to_turns(samples, speech)
        material.backchannels += short_crops(samples)
        for piece in pieces:
            if reserve > 0:
                kept.append(piece)
                reserve -= piece.speech_seconds
            else:
                material.turns.append(piece)
    if kept:
        material.enrollment = _joined(kept)
    return material


def _joined(pieces: list[Piece]) -> Piece:
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    samples: list[np.ndarray] = []
    speech: list[Span] = []
    cursor = 0.0
    for piece in pieces:
        speech += [(cursor + s, cursor + e) for s, e in piece.speech]
        samples += [piece.samples, gap]
        cursor += piece.seconds + gap.size / SAMPLE_RATE
    return Piece(np.concatenate(samples), tuple(speech))


def speak(voice: Voice, text: str) -> np.ndarray:
    """espeak-ng's rendering of `text` in `voice`, at 16 kHz."""
    out = subprocess.run(["espeak-ng", "-v", voice.espeak, "-p", str(voice.pitch),
                          "-s", str(voice.rate), "--stdout", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768
    divisor = int(np.gcd(SAMPLE_RATE, rate))
    return np.asarray(resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor),
                      dtype=np.float32)


def load_synthetic(voice: Voice, sentences: tuple[str, ...]) -> VoiceMaterial:
    material = VoiceMaterial(voice)
    enrol: list[Piece] = []
    for number, text in enumerate(sentences):
        samples = speak(voice, text)
        speech = speech_activity(samples)
        if not speech:
            continue
        piece = cut(level_to_speech(flatten(samples, speech), speech), speech, speech[0],
                    speech[-1])
        if number >= len(sentences) - _ENROLL_SENTENCES:
            enrol.append(piece)
        else:
            material.turns.append(piece)
    for text in BACKCHANNEL_TEXTS:
        samples = speak(voice, text)
        speech = speech_activity(samples)
        if speech:
            material.backchannels.append(cut(level_to_speech(flatten(samples, speech), speech),
                                             speech, speech[0], speech[-1]))
    material.enrollment = _joined(enrol)
    return material


def grouped_turns(material: VoiceMaterial, rng: np.random.Generator) -> list[Piece]:
    """The voice's phrases grouped into turns of one to three phrases, in source order."""
    out: list[Piece] = []
    turns = material.turns
    i = 0
    while i < len(turns):
        size = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        group = turns[i:i + size]
        out.append(_joined_tight(group, rng))
        i += len(group)
    return out


def _joined_tight(pieces: list[Piece], rng: np.random.Generator) -> Piece:
    """Phrases one after another with a natural pause between them."""
    if len(pieces) == 1:
        return pieces[0]
    samples: list[np.ndarray] = []
    speech: list[Span] = []
    cursor = 0.0
    for number, piece in enumerate(pieces):
        speech += [(cursor + s, cursor + e) for s, e in piece.speech]
        samples.append(piece.samples)
        cursor += piece.seconds
        if number < len(pieces) - 1:
            pause = float(rng.uniform(BRIDGE_SECONDS + 0.1, _MAX_INNER_PAUSE))
            samples.append(np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32))
            cursor += int(pause * SAMPLE_RATE) / SAMPLE_RATE
    return Piece(np.concatenate(samples), tuple(speech))
