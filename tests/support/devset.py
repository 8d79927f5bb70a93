"""The diarization development set: conversations assembled from real and synthetic voices.

Recipe (every choice drawn from a generator seeded by the conversation's number, so
the set is the same on every machine with the same corpus and espeak-ng):

- Each half (see `devset_voices`) has 30 conversations: 1 to 6 speakers, five of each
  count, lasting 1, 2, 3, 5 or 10 minutes. Three in five use real voices only, one
  mixes real and synthetic voices, one is synthetic only (real voices are swapped for
  synthetic ones when a half lacks real speech for the length asked).
- Speakers' shares of the talk are drawn from a Dirichlet distribution, with at least
  8 s each (an equal share where the conversation is too short for that); a draw in
  which someone has less than 5 s of speech of their own (not overlapped) is drawn
  again. A voice's
  speech is used in source order, one to three phrases a turn, from a random start;
  a voice with little speech says it again (regrouped), up to five times in all.
- Turns follow each other after a pause (40 % fast, 0.05-0.25 s; 45 % 0.25-0.8 s; 15 %
  0.8-2 s) or cut in on the previous speaker by 0.25-1.5 s, and listeners drop short
  back-channels (a word or two) into long turns. Overlaps and back-channels are steered
  so that 10 to 20 % of the speech (a target drawn per conversation) is overlapped.
- Each speaker gets a level 0-10 dB below the others' best, each turn ±1 dB more.
- Everyone shares one channel (see `devset_channel`): each source's own colouring is
  evened out, then all go through the same band limit and one room (reverberation
  0.15-0.45 s, an impulse response per speaker), and the mix gets pink noise 15 to
  30 dB below the speech.
- The reference RTTM is the union of the placed pieces' speech activity (see
  `devset_voices`), per speaker, at 10 ms resolution.

    python -m tests.support.devset OUT_DIR [--half tune|held] [--only ID ...]

writes OUT_DIR/<half>/<id>.wav + .rttm and a manifest.jsonl that `hark eval
--diarization` reads, and OUT_DIR/enrol/<voice>.wav: speech of each voice that no
conversation uses, for identification trials.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from tests.support.conversations import SENTENCES
from tests.support.devset_channel import Room, pink_noise
from tests.support.devset_voices import (
    BRIDGE_SECONDS,
    HALVES,
    VOICES,
    Piece,
    Voice,
    VoiceMaterial,
    grouped_turns,
    load_real,
    load_synthetic,
)

RECIPE_VERSION = 5
SPEAKER_COUNTS = (1, 2, 3, 4, 5, 6)
MINUTES = (1, 2, 3, 5, 10)
_REPEATS = 5
# How many times a voice's speech may be used in one conversation. Reuse is plain:
# speeding speech up or down moves its pitch and formants, and speaker encoders take
# a voice shifted by 5 % or more for another person.
_USES = 5
_MIN_TALK_SECONDS = 8.0
# A conversation is drawn again until everyone says at least this much on their own:
# nobody, listener or machine, can tell a voice that only ever murmurs over others.
_LEAST_SOLO_SECONDS = 5.0
_FRAME = 0.01
# The part of a conversation's length its speakers' talk adds up to (overlaps and
# pauses make up the rest).
_SPEECH_SHARE = 0.85


@dataclass(frozen=True)
class ConversationPlan:
    id: str
    half: str
    speakers: int
    minutes: float
    synthetic: str  # "none", "some" or "all"
    seed: int


def plan(half: str) -> list[ConversationPlan]:
    out: list[ConversationPlan] = []
    base = HALVES.index(half) * 1000
    for count in SPEAKER_COUNTS:
        for repeat in range(_REPEATS):
            minutes = MINUTES[(repeat + count) % len(MINUTES)]
            synthetic = ("none", "none", "some", "none", "all")[repeat]
            number = len(out)
            out.append(ConversationPlan(f"{half}{number:02d}_{count}spk_{minutes}min", half,
                                        count, minutes, synthetic, base + number))
    return out


@dataclass
class Built:
    plan: ConversationPlan
    audio: np.ndarray
    turns: list[tuple[float, float, str]]
    voices: list[str]
    overlap_ratio: float
    languages: list[str] = field(default_factory=list)
    # Seconds of speech, with nobody else talking, of the speaker who has least of it.
    least_solo: float = 0.0


class _Feed:
    """A voice's turns and back-channels, in order, reused with a speed change when spent."""

    def __init__(self, material: VoiceMaterial, rng: np.random.Generator) -> None:
        self.material = material
        self.rng = rng
        self.passes = 0
        self.queue: list[Piece] = []
        self._refill(offset=True)

    @property
    def capacity(self) -> float:
        return self.material.speech_seconds * _USES

    def _refill(self, offset: bool = False) -> None:
        self.passes += 1
        turns = grouped_turns(self.material, self.rng)
        if offset and len(turns) > 1:
            first = int(self.rng.integers(len(turns)))
            turns = turns[first:] + turns[:first]
        self.queue = turns

    def turn(self) -> Piece:
        if not self.queue:
            self._refill()
        return self.queue.pop(0)

    def backchannel(self) -> Piece | None:
        options = self.material.backchannels
        if not options:
            return None
        return options[int(self.rng.integers(len(options)))]


def load_materials(half: str, corpus_dir: Path) -> dict[str, VoiceMaterial]:
    out = {}
    for voice in VOICES:
        if voice.half != half:
            continue
        out[voice.name] = (load_synthetic(voice, SENTENCES) if voice.synthetic
                           else load_real(voice, corpus_dir))
    return out


def _choose_voices(spec: ConversationPlan, materials: dict[str, VoiceMaterial],
                   rng: np.random.Generator, speech_needed: float) -> list[VoiceMaterial]:
    real = [m for m in materials.values() if not m.voice.synthetic]
    synthetic = [m for m in materials.values() if m.voice.synthetic]
    rng.shuffle(real)
    rng.shuffle(synthetic)
    wanted_synthetic = {"none": 0, "some": (spec.speakers + 1) // 2,
                        "all": spec.speakers}[spec.synthetic]
    # Each speaker needs room for at least an equal share of a fifth of the talk.
    floor = min(_MIN_TALK_SECONDS, speech_needed / spec.speakers)
    chosen: list[VoiceMaterial] = []
    groups: set[str] = set()
    for material in real:
        if len(chosen) == spec.speakers - wanted_synthetic:
            break
        apart = material.voice.apart
        if apart and apart in groups:
            continue
        if material.speech_seconds * _USES < max(floor, 0.6 * speech_needed
                                                          / spec.speakers):
            continue
        chosen.append(material)
        if apart:
            groups.add(apart)
    chosen += synthetic[:spec.speakers - len(chosen)]
    return chosen


def _shares(voices: list[VoiceMaterial], rng: np.random.Generator,
            speech_needed: float) -> np.ndarray:
    n = len(voices)
    floor = min(_MIN_TALK_SECONDS, speech_needed / n) / speech_needed
    capacity = np.array([m.speech_seconds * _USES for m in voices]) / speech_needed
    shares = rng.dirichlet(np.full(n, 2.0))
    shares = np.maximum(shares, floor)
    shares /= shares.sum()
    for _ in range(10):  # Move talk from voices that lack speech to those that have it.
        over = shares > capacity
        if not over.any():
            break
        spare = float(np.sum(shares[over] - capacity[over]))
        shares[over] = capacity[over]
        room = ~over
        shares[room] += spare * shares[room] / shares[room].sum()
    return np.asarray(shares / shares.sum())


def build_conversation(spec: ConversationPlan, materials: dict[str, VoiceMaterial]
                       ) -> Built:
    for attempt in range(20):
        rng = np.random.default_rng([spec.seed, attempt])
        built = _assemble(spec, materials, rng)
        fair = _SPEECH_SHARE * 60.0 * spec.minutes / spec.speakers
        enough = built.least_solo >= min(_LEAST_SOLO_SECONDS, 0.5 * fair)
        if enough and (spec.speakers == 1 or 0.10 <= built.overlap_ratio <= 0.20):
            return built
    return built


def _assemble(spec: ConversationPlan, materials: dict[str, VoiceMaterial],
              rng: np.random.Generator) -> Built:
    total = spec.minutes * 60.0
    speech_needed = _SPEECH_SHARE * total
    voices = _choose_voices(spec, materials, rng, speech_needed)
    n = len(voices)
    shares = _shares(voices, rng, speech_needed)
    feeds = [_Feed(m, rng) for m in voices]
    gains_db = rng.uniform(-10.0, 0.0, n)
    room = Room.draw(n, any(m.narrowband for m in voices), rng)
    target_overlap = float(rng.uniform(0.11, 0.19))
    frames = int(total / _FRAME) + 6000
    activity = np.zeros((n, frames), dtype=bool)
    placed: list[tuple[int, float, Piece, float]] = []
    talk = np.zeros(n)
    last_end = np.full(n, -10.0)

    def place(k: int, start: float, piece: Piece) -> None:
        gain = 10 ** ((gains_db[k] + rng.normal(0, 1.0)) / 20)
        placed.append((k, start, piece, gain))
        for s, e in piece.speech:
            activity[k, int((start + s) / _FRAME):int((start + e) / _FRAME)] = True
        talk[k] += piece.speech_seconds
        last_end[k] = start + piece.seconds

    def overlap_ratio() -> float:
        counts = activity.sum(axis=0)
        return float(np.count_nonzero(counts >= 2)) / max(1, int(np.count_nonzero(counts)))

    cursor = float(rng.uniform(0.3, 1.5))
    previous: int | None = None
    previous_start = previous_end = 0.0
    while cursor < total - 1.0:
        k = 0 if n == 1 else _next_speaker(shares, talk, previous, rng)
        piece = feeds[k].turn()
        behind = overlap_ratio() < target_overlap
        if previous is None:
            start = cursor
        elif k != previous and rng.random() < (0.6 if behind else 0.08):
            cap = 0.45 * min(previous_end - previous_start, piece.seconds)
            start = previous_end - min(float(rng.uniform(0.25, 1.5)), cap)
        else:
            start = previous_end + _pause(rng)
        start = max(start, last_end[k] + 0.2)
        place(k, start, piece)
        if n > 1 and piece.seconds >= 3.0 and rng.random() < (0.45 if behind else 0.05):
            _backchannel(k, start, piece, feeds, last_end, rng, place)
        previous, previous_start, previous_end = k, start, start + piece.seconds
        cursor = max(cursor, previous_end)
    length = int(min(cursor + float(rng.uniform(0.3, 1.0)), frames * _FRAME) * SAMPLE_RATE)
    audio = _mix(placed, length, room, rng)
    labels = [m.voice.name for m in voices]
    turns = _reference(activity[:, :int(length / SAMPLE_RATE / _FRAME)], labels)
    alone = activity & (activity.sum(axis=0) == 1)
    return Built(spec, audio, turns, labels, overlap_ratio(),
                 sorted({m.voice.language for m in voices}),
                 float(alone.sum(axis=1).min()) * _FRAME)


def _next_speaker(shares: np.ndarray, talk: np.ndarray, previous: int | None,
                  rng: np.random.Generator) -> int:
    """Whoever is furthest behind their share is likeliest to speak next."""
    deficit = shares * (talk.sum() + 20.0) - talk
    weights = np.maximum(deficit, 0.5) ** 2
    if previous is not None and rng.random() > 0.1:  # Mostly someone else takes over.
        weights[previous] = 0.0
    return int(rng.choice(len(shares), p=weights / weights.sum()))


def _pause(rng: np.random.Generator) -> float:
    kind = rng.random()
    if kind < 0.4:
        return float(rng.uniform(0.05, 0.25))
    if kind < 0.85:
        return float(rng.uniform(0.25, 0.8))
    return float(rng.uniform(0.8, 2.0))


def _backchannel(k: int, start: float, piece: Piece, feeds: list[_Feed],
                 last_end: np.ndarray, rng: np.random.Generator, place: object) -> None:
    others = [j for j in range(len(feeds)) if j != k]
    j = int(rng.choice(others))
    short = feeds[j].backchannel()
    if short is None:
        return
    earliest = max(start + 0.8, last_end[j] + 0.3)
    latest = start + piece.seconds - 0.8 - short.seconds
    if latest > earliest:
        place(j, float(rng.uniform(earliest, latest)), short)  # type: ignore[operator]


def _mix(placed: list[tuple[int, float, Piece, float]], length: int, room: Room,
         rng: np.random.Generator) -> np.ndarray:
    audio = np.zeros(length, dtype=np.float64)
    levels = []
    for speaker, start, piece, gain in placed:
        first = int(start * SAMPLE_RATE)
        heard = room.apply(piece.samples, speaker)[:max(0, length - first)]
        audio[first:first + heard.size] += heard * gain
        levels.append(gain)
    speech_rms = 10 ** (-26 / 20) * float(np.mean(levels)) if levels else 1e-3
    snr = float(rng.uniform(15.0, 30.0))
    audio += pink_noise(length, rng) * speech_rms * 10 ** (-snr / 20)
    peak = float(np.max(np.abs(audio))) if length else 0.0
    if peak > 0.95:
        audio *= 0.95 / peak
    return audio.astype(np.float32)


def _reference(activity: np.ndarray, labels: list[str]) -> list[tuple[float, float, str]]:
    turns = []
    bridge = round(BRIDGE_SECONDS / _FRAME)
    for k, label in enumerate(labels):
        row = activity[k]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        spans = list(zip(edges[::2], edges[1::2], strict=True))
        merged: list[list[int]] = []
        for s, e in spans:
            if merged and s - merged[-1][1] < bridge:
                merged[-1][1] = int(e)
            else:
                merged.append([int(s), int(e)])
        turns += [(round(s * _FRAME, 3), round(e * _FRAME, 3), label) for s, e in merged]
    return sorted(turns)


def recipe_hash(half: str) -> str:
    text = json.dumps([RECIPE_VERSION, [vars(p) for p in plan(half)],
                       [vars(v) for v in VOICES if v.half == half]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_wav(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def write_rttm(path: Path, name: str, turns: Sequence[tuple[float, float, str]]) -> None:
    path.write_text("".join(
        f"SPEAKER {name} 1 {s:.3f} {e - s:.3f} <NA> <NA> {label} <NA> <NA>\n"
        for s, e, label in turns))


def build_half(half: str, out_dir: Path, corpus_dir: Path,
               only: Sequence[str] | None = None) -> Path:
    """Write the half's conversations (or those in `only`) and its manifest; reuse a
    complete earlier build of the same recipe."""
    folder = out_dir / half
    manifest = folder / "manifest.jsonl"
    stamp = folder / "RECIPE"
    wanted = [p for p in plan(half) if only is None or p.id in only]
    if stamp.is_file() and stamp.read_text() == recipe_hash(half) and manifest.is_file():
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        if {r["id"] for r in rows} >= {p.id for p in wanted}:
            return _subset(folder, rows, [p.id for p in wanted])
    folder.mkdir(parents=True, exist_ok=True)
    materials = load_materials(half, corpus_dir)
    rows = []
    for spec in wanted:
        built = build_conversation(spec, materials)
        write_wav(folder / f"{spec.id}.wav", built.audio)
        write_rttm(folder / f"{spec.id}.rttm", spec.id, built.turns)
        rows.append({"id": spec.id, "audio": f"{spec.id}.wav", "rttm": f"{spec.id}.rttm",
                     "num_speakers": spec.speakers, "half": half,
                     "duration_s": round(built.audio.size / SAMPLE_RATE, 3),
                     "overlap_ratio": round(built.overlap_ratio, 4), "voices": built.voices,
                     "languages": built.languages})
    enrol = out_dir / "enrol"
    enrol.mkdir(exist_ok=True)
    for name, material in materials.items():
        if material.enrollment is not None:
            write_wav(enrol / f"{name}.wav", material.enrollment.samples)
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if only is None:
        stamp.write_text(recipe_hash(half))
    return manifest


def _subset(folder: Path, rows: list[dict[str, object]], ids: list[str]) -> Path:
    if {str(r["id"]) for r in rows} == set(ids):
        return folder / "manifest.jsonl"
    path = folder / f"subset-{hashlib.sha256(' '.join(ids).encode()).hexdigest()[:8]}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["id"] in ids))
    return path


def voice(name: str) -> Voice:
    return next(v for v in VOICES if v.name == name)


def main() -> None:
    from benchmarks.common import corpus_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--half", choices=HALVES, action="append")
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    for half in args.half or HALVES:
        manifest = build_half(half, args.out, corpus_dir(), args.only)
        print(manifest)


if __name__ == "__main__":
    main()
