"""Live transcription: audio in as it arrives, words out as they are spoken.

`LiveTranscriber` takes 16 kHz mono samples in chunks of any size and returns events:

- `speech_started` / `speech_stopped` from Silero, scored window by window as the audio
  comes (`SpeechTracker`);
- `partial`: the utterance in progress as the engine hears it now; its first
  `stable` words will not change;
- `final`: a finished phrase with word timings, never revised.

While someone speaks, the utterance's audio is decoded again each time
`decode_every` seconds more have arrived. A word is committed once two decodes in a
row agree on it and on everything before it (the local-agreement policy of
Macháček et al., "Turning Whisper into Real-Time Transcription System", 2023), so a
decode is never trusted on its own and nothing is ever taken back. When the
committed words reach a sentence end, that sentence is given out as `final` and the
audio before it is dropped, so a decode never covers more than `max_buffer_seconds`.
When the speaker stops (a pause of `end_silence_ms`), the rest is decoded once more,
with the full beam, and given out. Memory therefore holds one utterance's tail,
however long the stream runs.

Times are seconds from the start of the stream. Any `Engine` will do: it is given
the buffer as a recording with one chunk.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.engines.base import Engine
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.phrases import ends_sentence, split_segment
from hark.pipeline.silero import WINDOW_SAMPLES, SileroScorer
from hark.pipeline.transcript import Segment, Word, join_words
from hark.pipeline.vad import Chunk

EventKind = Literal["speech_started", "speech_stopped", "partial", "final"]


@dataclass(frozen=True)
class LiveOptions:
    # Silero's speech threshold; speech ends after this much audio scored below it.
    threshold: float = 0.5
    end_silence_ms: int = 500
    # Audio kept from before the first speech window, and decoded with it.
    pre_roll_ms: int = 300
    # New audio between two decodes of the utterance in progress; at least this many
    # times the last decode took, so a slow machine decodes less often instead of
    # falling further and further behind the speaker.
    decode_every: float = 1.0
    decode_cost_factor: float = 1.5
    # Past this, the committed words are given out and their audio dropped even
    # without a sentence end; a single decode never sees more.
    max_buffer_seconds: float = 24.0
    # The text given out last kept as the decoder's prompt (characters).
    prompt_chars: int = 200


@dataclass
class LiveEvent:
    kind: EventKind
    time: float
    # `partial`: the whole hypothesis; `final`: one phrase.
    segment: Segment | None = None
    # `partial`: how many leading words are committed.
    stable: int = 0


@dataclass
class SpeechTracker:
    """Silero's verdict window by window: speech starts at a window scoring at least
    `threshold` and ends once `end_silence_ms` of windows score below it by 0.15."""

    threshold: float = 0.5
    end_silence_ms: int = 500
    in_speech: bool = False
    _silent_windows: int = 0
    _scorer: SileroScorer = field(default_factory=SileroScorer)

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Speech probabilities of whole 512-sample windows, in stream order."""
        return self._scorer(windows.reshape(-1))

    def step(self, score: float) -> Literal["started", "stopped"] | None:
        """Advance one window; the change it makes, if any."""
        if not self.in_speech:
            if score >= self.threshold:
                self.in_speech, self._silent_windows = True, 0
                return "started"
            return None
        if score >= max(self.threshold - 0.15, 0.01):
            self._silent_windows = 0
            return None
        self._silent_windows += 1
        if self._silent_windows * WINDOW_SAMPLES >= self.end_silence_ms * SAMPLE_RATE / 1000:
            self.in_speech = False
            return "stopped"
        return None


class LiveTranscriber:
    """One live stream's transcription. Not thread-safe: one feeder at a time."""

    def __init__(self, engine: Engine, options: TranscribeOptions,
                 live: LiveOptions | None = None) -> None:
        engine.check(options)
        self.engine = engine
        self.options = options
        self.live = live or LiveOptions()
        self.language: str | None = options.language
        self.received = 0  # samples fed so far: the stream's clock
        self._tracker = SpeechTracker(self.live.threshold, self.live.end_silence_ms)
        self._pending = np.zeros(0, np.float32)  # the tail short of a whole window
        self._pre_roll: deque[np.ndarray] = deque(
            maxlen=max(1, self.live.pre_roll_ms * SAMPLE_RATE // 1000 // WINDOW_SAMPLES))
        self._pieces: list[np.ndarray] = []  # the utterance's audio since `_buffer_start`
        self._buffer_start = 0
        self._buffered = 0
        self._decoded_at = 0
        self._decode_every = self.live.decode_every
        self._committed: list[Word] = []  # agreed on, not yet given out
        self._spoken: list[Word] = []  # given out in this utterance
        self._context = ""  # the end of the text given out so far: the decoder's prompt
        self._previous: list[Word] = []  # the last decode's words after the committed ones
        self._next_id = 0

    @property
    def buffered_seconds(self) -> float:
        return self._buffered / SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> list[LiveEvent]:
        """Take more audio (float32 in [-1, 1], 16 kHz mono); the events it causes."""
        audio = np.concatenate([self._pending, np.asarray(samples, np.float32).reshape(-1)])
        whole = audio.shape[0] // WINDOW_SAMPLES * WINDOW_SAMPLES
        self._pending = audio[whole:].copy()
        if whole == 0:
            return []
        windows = audio[:whole].reshape(-1, WINDOW_SAMPLES)
        events: list[LiveEvent] = []
        for window, score in zip(windows, self._tracker.score(windows), strict=True):
            change = self._tracker.step(float(score))
            if change == "started":
                self._start_utterance()
                events.append(LiveEvent("speech_started", self.received / SAMPLE_RATE))
            self.received += WINDOW_SAMPLES
            if self._tracker.in_speech or change == "stopped":
                self._pieces.append(window.copy())
                self._buffered += WINDOW_SAMPLES
            else:
                self._pre_roll.append(window.copy())
            if change == "stopped":
                events += self._end_utterance()
                events.append(LiveEvent("speech_stopped", self.received / SAMPLE_RATE))
        # A full buffer is decoded at once, however slow decodes have become: its words
        # are then given out and their audio dropped, which keeps the audio held bounded.
        full = self._buffered > self.live.max_buffer_seconds * SAMPLE_RATE
        if self._tracker.in_speech and (full or self.received - self._decoded_at >=
                                        self._decode_every * SAMPLE_RATE):
            started = time.perf_counter()
            events += self._advance()
            self._decode_every = max(self.live.decode_every, self.live.decode_cost_factor
                                     * (time.perf_counter() - started))
        return events

    def clear(self) -> None:
        """Forget the utterance in progress and any audio held for it."""
        self._tracker.in_speech = False
        self._forget_utterance()
        self._pre_roll.clear()

    def finish(self) -> list[LiveEvent]:
        """The stream has ended: give out what is left of the utterance in progress."""
        events: list[LiveEvent] = []
        if self._tracker.in_speech:
            self._tracker.in_speech = False
            events += self._end_utterance()
            events.append(LiveEvent("speech_stopped", self.received / SAMPLE_RATE))
        return events

    # --- the utterance in progress ---------------------------------------------------

    def _forget_utterance(self) -> None:
        self._pieces, self._buffered = [], 0
        self._committed, self._spoken, self._previous = [], [], []

    def _start_utterance(self) -> None:
        self._forget_utterance()
        self._pieces = list(self._pre_roll)
        self._pre_roll.clear()
        self._buffered = sum(p.shape[0] for p in self._pieces)
        self._buffer_start = self.received - self._buffered
        self._decoded_at = self.received

    def _advance(self) -> list[LiveEvent]:
        """Decode the utterance so far; commit what two decodes agree on."""
        self._decoded_at = self.received
        words = self._new_words(self._decode(final=False))
        agreed = _agreed_prefix(self._previous, words)
        self._committed += words[:agreed]
        self._previous = words[agreed:]
        events = self._release_sentences()
        hypothesis = self._committed + self._previous
        if hypothesis:
            events.append(LiveEvent("partial", self.received / SAMPLE_RATE,
                                    _segment(-1, hypothesis), stable=len(self._committed)))
        return events

    def _end_utterance(self) -> list[LiveEvent]:
        words = self._committed + self._new_words(self._decode(final=True))
        events = self._finals(words)
        self._forget_utterance()
        return events

    def _release_sentences(self) -> list[LiveEvent]:
        """Give out committed words up to their last sentence end (or all of them when
        the buffer is full), and drop the audio they cover."""
        cut = max((i + 1 for i, w in enumerate(self._committed) if ends_sentence(w.word)),
                  default=0)
        if cut == 0 and self._buffered > self.live.max_buffer_seconds * SAMPLE_RATE:
            cut = len(self._committed)
        if cut == 0:
            return []
        released, self._committed = self._committed[:cut], self._committed[cut:]
        self._drop_audio_before(released[-1].end)
        return self._finals(released)

    def _finals(self, words: list[Word]) -> list[LiveEvent]:
        if not words:
            return []
        self._spoken += words
        self._context = (self._context + " " + join_words(words)).strip()[
            -self.live.prompt_chars:]
        events = []
        for phrase in split_segment(_segment(self._next_id, words)):
            phrase.id = self._next_id
            self._next_id += 1
            events.append(LiveEvent("final", self.received / SAMPLE_RATE, phrase))
        return events

    def _drop_audio_before(self, seconds: float) -> None:
        keep_from = min(int(seconds * SAMPLE_RATE) - self._buffer_start, self._buffered)
        if keep_from <= 0:
            return
        audio = np.concatenate(self._pieces)[keep_from:]
        self._pieces = [audio] if audio.size else []
        self._buffer_start += keep_from
        self._buffered = int(audio.shape[0])

    def _decode(self, *, final: bool) -> list[Word]:
        """The buffer's words, in stream seconds."""
        if not self._pieces:
            return []
        audio = np.concatenate(self._pieces)
        # Only text whose audio has left the buffer: prompted with words it is about to
        # hear, the decoder takes them as already said and skips them.
        prompt = self._context or None
        # Every decode uses the caller's beam: the words two greedy decodes agree on are
        # committed too, and greedy errors would then stay.
        options = replace(self.options, language=self.language, vad=None, batch_size=0,
                          initial_prompt=prompt or self.options.initial_prompt)
        recognition = self.engine.recognize(audio, [Chunk(0, int(audio.shape[0]))], options)
        offset = self._buffer_start / SAMPLE_RATE
        # Tokens without a letter or digit ("." alone) are not words: the decoder makes
        # runs of them from noise, and prompted with such a run it makes more.
        words = [replace(w, start=w.start + offset, end=w.end + offset)
                 for segment in recognition.segments for w in segment.words
                 if _NOT_WORD.sub("", w.word)]
        if _repetitive(words):
            # A decoder caught in a loop ("the the the ..."): nothing of it is given
            # out, and the prompt that may have led it there is dropped.
            self._context = ""
            return []
        if self.language is None and final and recognition.language:
            # The language found on a whole utterance holds for the rest of the stream.
            self.language = recognition.language
        return words

    def _new_words(self, words: list[Word]) -> list[Word]:
        """The words of a decode that come after those already committed or given out,
        never starting before the last of those ends."""
        known = self._spoken + self._committed
        if not known:
            return words
        floor = known[-1].end
        return [w if w.start >= floor else replace(w, start=floor, end=max(w.end, floor))
                for w in self._after_known(words, known)]

    def _after_known(self, words: list[Word], known: list[Word]) -> list[Word]:
        # The decode covers the committed words again, and its timings of them move a
        # little from decode to decode, so they are found by their text first.
        if self._committed:
            after = _end_of_match(self._committed, words)
            if after is not None:
                return words[after:]
        fresh = [w for w in words if w.start >= known[-1].end - 0.1]
        # A word decoded again near the boundary appears at the end of one list and the
        # start of the other: drop the repeat (up to five words).
        for size in range(min(5, len(fresh), len(known)), 0, -1):
            if _norms(known[-size:]) == _norms(fresh[:size]):
                return fresh[size:]
        return fresh


def _end_of_match(committed: list[Word], words: list[Word]) -> int | None:
    """Where in `words` the committed words end: after the place that repeats their last
    (up to three) words, nearest in time to where they were heard; None if nowhere."""
    for size in range(min(3, len(committed)), 0, -1):
        tail = _norms(committed[-size:])
        places = [i for i in range(len(words) - size + 1) if _norms(words[i:i + size]) == tail]
        close = [i for i in places if abs(words[i].start - committed[-size].start) <= 1.0]
        if close:
            best = min(close, key=lambda i: abs(words[i].start - committed[-size].start))
            return best + size
    return None


# Whisper's own bound: text that gzip shrinks more than this is a loop, not speech.
MAX_COMPRESSION_RATIO = 2.4


def _repetitive(words: list[Word]) -> bool:
    if len(words) < 12:
        return False
    text = join_words(words).encode()
    return len(text) / len(zlib.compress(text)) > MAX_COMPRESSION_RATIO


def _agreed_prefix(previous: list[Word], current: list[Word]) -> int:
    count = 0
    for before, now in zip(_norms(previous), _norms(current), strict=False):
        if before != now:
            break
        count += 1
    return count


_NOT_WORD = re.compile(r"[^\w']+")


def _norms(words: list[Word]) -> list[str]:
    return [_NOT_WORD.sub("", w.word.lower()) for w in words]


def _segment(index: int, words: list[Word]) -> Segment:
    probabilities = [w.probability for w in words if w.probability is not None]
    return Segment(id=index, start=words[0].start, end=words[-1].end, text=join_words(words),
                   confidence=float(np.mean(probabilities)) if probabilities else None,
                   words=list(words))
