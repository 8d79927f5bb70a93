"""Synthetic conversations between espeak-ng voices, with exact reference turns.

Each turn is one or two sentences spoken by one voice; voices take turns in a random
order (never the same voice twice in a row) with short pauses between turns. Turn
times come from the sample counts of the synthesised speech, trimmed of the silence
espeak-ng leaves around an utterance, so the reference is exact.

The committed fixtures under ``tests/fixtures/conversations`` were made by::

    python -m tests.support.conversations tests/fixtures/conversations

which needs espeak-ng; the tests only read the fixtures. The voices were chosen for
being far apart in Resemblyzer's embedding space: many espeak-ng variants sound alike
to it (and ``en-gb+<variant>`` silently ignores the variant).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from hark.evaluation.diarization import read_rttm as read_reference
from hark.pipeline.audio import SAMPLE_RATE, load_audio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "conversations"

VOICES = ("en-us+iven", "en-gb-scotland+f2", "en-us+Storm", "en-us+klatt3")

SENTENCES = (
    "The train to the coast leaves at seven, so we should pack tonight.",
    "I asked the plumber twice, and he still has not called me back.",
    "Our garden finally has tomatoes after a whole summer of waiting.",
    "Could you remind me where we parked the blue car this morning?",
    "The library closes early on Fridays during the winter months.",
    "She painted the kitchen yellow because the old green felt gloomy.",
    "Nobody expected the meeting to run for almost three hours.",
    "Let us try the new bakery on the corner before it gets busy.",
    "My brother keeps bees on the roof of his apartment building.",
    "The bridge was closed for repairs, so we took the long way round.",
    "I think the printer on the second floor is out of paper again.",
    "We watched the storm roll in across the lake from the porch.",
    "The recipe says to let the dough rest for at least an hour.",
    "Please send the invoices to the new address from next month.",
    "He learned to play the cello when he was nearly fifty years old.",
    "The museum has a small room full of old maps and compasses.",
    "If the weather holds, we can walk up the hill on Sunday.",
    "I forgot my umbrella on the bus, which was rather annoying.",
    "The children built a fort out of cushions in the living room.",
    "Our flight was delayed, but the airline gave us lunch vouchers.",
    "The new software update changed every menu I had memorised.",
    "A fox crossed the road right in front of us last night.",
    "We need more chairs if everyone from the office is coming.",
    "The soup tasted better on the second day, as it often does.",
    "My neighbour plays the trumpet every evening at half past six.",
    "The river rose so high that the footpath disappeared under water.",
    "I would rather take the stairs than wait for that slow lift.",
    "They opened a cinema in the old factory near the station.",
    "The cat sleeps on the warm laptop whenever I leave it open.",
    "We counted forty seven birds at the feeder this afternoon.",
    "Her handwriting is so neat that it looks almost printed.",
    "The market sells fresh fish only on Tuesdays and Saturdays.",
    "I still have the postcard you sent me from Lisbon years ago.",
    "The heating broke in January, of all the months it could choose.",
    "Turn left at the church and the house is the third on the right.",
    "He fixed the bicycle chain with a paper clip and some patience.",
    "We ran out of coffee, so breakfast was a quiet affair.",
    "The concert tickets sold out within ten minutes of going on sale.",
    "Somebody left a bag of lemons on the doorstep this morning.",
    "The lecture on volcanoes was far more exciting than I expected.",
    "I keep a notebook by the bed in case I remember my dreams.",
    "The hotel room had a view of the harbour and the lighthouse.",
    "Our team lost the quiz by a single point on the final question.",
    "The bread machine makes a strange noise but the loaves are lovely.",
    "Wait until the paint dries before you hang the pictures back up.",
    "The wind blew the letters right off the kitchen table.",
    "We planted an apple tree for every child born in the family.",
    "Remember to water the ferns while I am away next week.",
    "Yes, that sounds right to me.",
    "Really? I had no idea.",
    "Fine, let us do it your way.",
    "Oh, I remember that one well.",
    "No, not on a weekday.",
    "Sure, I can bring the maps.",
)


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


@dataclass
class Conversation:
    name: str
    audio: np.ndarray
    turns: list[Turn]

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(t.speaker for t in self.turns))


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(voice: str, text: str) -> np.ndarray:
    """One utterance at 16 kHz, cut to its audible extent."""
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768
    divisor = np.gcd(SAMPLE_RATE, rate)
    samples = resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    return np.asarray(samples[loud[0]: loud[-1] + 1], dtype=np.float32)


def make_conversation(name: str, voices: tuple[str, ...], turns: int, seed: int) -> Conversation:
    rng = np.random.default_rng(seed)
    order = _speaker_order(len(voices), turns, rng)
    sentences = list(rng.permutation(len(SENTENCES)))
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(0.5, 1.0) * SAMPLE_RATE), np.float32)]
    cursor = pieces[0].size
    reference: list[Turn] = []
    gains = rng.uniform(0.35, 0.6, size=len(voices))
    for speaker in order:
        count = 1 if rng.random() < 0.85 else 2
        if len(sentences) < count:
            sentences = list(rng.permutation(len(SENTENCES))) + sentences
        text = " ".join(SENTENCES[sentences.pop()] for _ in range(count))
        speech = speak(voices[speaker], text)
        speech *= gains[speaker] / max(float(np.abs(speech).max()), 1e-6)
        reference.append(Turn(cursor / SAMPLE_RATE, (cursor + speech.size) / SAMPLE_RATE,
                              f"voice{speaker}"))
        pause = np.zeros(int(rng.uniform(0.3, 0.9) * SAMPLE_RATE), np.float32)
        pieces += [speech, pause]
        cursor += speech.size + pause.size
    audio = np.concatenate(pieces)
    # A faint noise floor, as any real recording has.
    audio += rng.normal(0, 3e-4, audio.size).astype(np.float32)
    return Conversation(name, audio, reference)


def _speaker_order(voices: int, turns: int, rng: np.random.Generator) -> list[int]:
    """Every voice speaks at least twice; nobody follows themselves."""
    while True:
        order = [int(v) for v in rng.permutation(voices)]
        while len(order) < turns:
            order.append(int(rng.choice([v for v in range(voices) if v != order[-1]])))
        if all(order.count(v) >= 2 for v in range(voices)):
            return order


# name, number of voices, turns, seed
FIXTURE_PLAN = (("two_voices", 2, 8, 11), ("three_voices", 3, 9, 12), ("four_voices", 4, 11, 13))


def write_rttm(path: Path, name: str, turns: list[Turn]) -> None:
    lines = [f"SPEAKER {name} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>"
             for t in turns]
    path.write_text("\n".join(lines) + "\n")


def read_rttm(path: Path) -> list[Turn]:
    return [Turn(start, end, speaker) for start, end, speaker in read_reference(path)]


def write_opus(path: Path, audio: np.ndarray, bit_rate: int = 16000) -> None:
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        stream.bit_rate = bit_rate
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def load_fixture(name: str, directory: Path = FIXTURES) -> Conversation:
    _, audio = load_audio(directory / f"{name}.ogg")
    return Conversation(name, audio, read_rttm(directory / f"{name}.rttm"))


def fixture_names(directory: Path = FIXTURES) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.rttm"))


def main(argv: list[str]) -> None:
    if not have_espeak():
        raise SystemExit("espeak-ng is needed to synthesise conversations (apt install espeak-ng)")
    out = Path(argv[0]) if argv else FIXTURES
    out.mkdir(parents=True, exist_ok=True)
    for name, voices, turns, seed in FIXTURE_PLAN:
        conversation = make_conversation(name, VOICES[:voices], turns, seed)
        write_opus(out / f"{name}.ogg", conversation.audio)
        write_rttm(out / f"{name}.rttm", name, conversation.turns)
        size = (out / f"{name}.ogg").stat().st_size
        print(f"{name}: {conversation.audio.size / SAMPLE_RATE:.1f} s, {size} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
