"""Speaker identification on the development set's conversations.

    python -m benchmarks.identification [--devset DIR] [--thresholds T ...]

Every voice of the development set has enrolment speech that no conversation uses
(DIR/enrol/<voice>.wav, see tests/support/devset.py). Each conversation of both halves
is diarized with the automatic count, and each speaker found is compared with the
enrolled voices by `match_speakers`, as Hark names speakers; its truth is the reference
voice it shares most seconds with. Two trials per conversation:
- enrolled: every voice enrolled; a speaker should be named as its own voice;
- strangers: the conversation's own voices not enrolled; any name is false.

Printed per half: the equal error rate of target against non-target similarities, and
at each threshold the false names (a wrong voice, or any name for a stranger) and the
share of the enrolled trial's speakers named right. The threshold to ship is the lowest
with no false name on the tune half; the held half reports it, never tuned on.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tests.support.devset import build_half

from benchmarks.common import corpus_dir, machine
from hark.config import Settings
from hark.evaluation.diarization import read_diarization_manifest, read_rttm
from hark.pipeline.audio import load_audio
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.diarization.identify import VoiceProfile, match_speakers, unit
from hark.pipeline.diarization.resemblyzer import ResemblyzerDiarizer
from hark.pipeline.vad import VadOptions, detect_speech

_REGION_SECONDS = 15.0  # the pipeline's diarization regions (see hark.pipeline.run)


@dataclass
class Conversation:
    voices: list[str]  # the reference's voices
    speakers: dict[str, np.ndarray]  # found speaker → voice vector
    truth: dict[str, str]  # found speaker → the voice it mostly is


@dataclass
class Outcome:
    false_names: int = 0
    named_right: int = 0
    enrolled_trials: int = 0
    stranger_trials: int = 0


def diarize_half(half: str, devset: Path, diarizer: ResemblyzerDiarizer) -> list[Conversation]:
    conversations = []
    for item in read_diarization_manifest(build_half(half, devset, corpus_dir())):
        audio = load_audio(item.audio)[1]
        reference = read_rttm(item.rttm)
        found = diarizer.diarize(audio, detect_speech(audio, VadOptions(), _REGION_SECONDS),
                                 DiarizationOptions())
        shared: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for turn in found.turns:
            for start, end, voice in reference:
                seconds = min(turn.end, end) - max(turn.start, start)
                if seconds > 0:
                    shared[turn.speaker][voice] += seconds
        truth = {speaker: max(by_voice, key=lambda v: by_voice[v])
                 for speaker, by_voice in shared.items()}
        conversations.append(Conversation(
            sorted({v for _, _, v in reference}),
            {s: v for s, v in found.embeddings.items() if s in truth}, truth))
    return conversations


def equal_error_rate(conversations: list[Conversation], enrolled: dict[str, np.ndarray]) -> float:
    target: list[float] = []
    other: list[float] = []
    for conversation in conversations:
        for speaker, vector in conversation.speakers.items():
            for voice, profile in enrolled.items():
                score = float(unit(vector.astype(np.float64)) @ unit(profile.astype(np.float64)))
                (target if voice == conversation.truth[speaker] else other).append(score)
    thresholds = np.sort(np.concatenate([target, other]))
    false_reject = np.array([np.mean(np.asarray(target) < t) for t in thresholds])
    false_accept = np.array([np.mean(np.asarray(other) >= t) for t in thresholds])
    at = int(np.argmin(np.abs(false_reject - false_accept)))
    return float((false_reject[at] + false_accept[at]) / 2)


def outcome(conversations: list[Conversation], enrolled: dict[str, np.ndarray],
            threshold: float) -> Outcome:
    result = Outcome()
    for conversation in conversations:
        everyone = [VoiceProfile(v, v, e) for v, e in enrolled.items()]
        strangers = [p for p in everyone if p.name not in conversation.voices]
        for profiles, own_enrolled in ((everyone, True), (strangers, False)):
            names = match_speakers(conversation.speakers, profiles, threshold)
            for speaker in conversation.speakers:
                name = names[speaker].name if speaker in names else None
                if own_enrolled:
                    result.enrolled_trials += 1
                    result.named_right += name == conversation.truth[speaker]
                else:
                    result.stranger_trials += 1
                if name is not None and name != conversation.truth[speaker]:
                    result.false_names += 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devset", type=Path, default=Path("/tmp/hark-devset"))
    parser.add_argument("--thresholds", type=float, nargs="*",
                        default=[0.70, 0.75, 0.80, 0.82, 0.84, 0.86])
    args = parser.parse_args()
    shipped = Settings(_env_file=None).speaker_match_threshold
    diarizer = ResemblyzerDiarizer()
    print(f"machine: {machine()}; shipped threshold {shipped}")
    halves = {half: diarize_half(half, args.devset, diarizer) for half in ("tune", "held")}
    enrolled = {path.stem: diarizer.embed(load_audio(path)[1])
                for path in sorted((args.devset / "enrol").glob("*.wav"))}
    grid = np.round(np.arange(0.60, 0.95, 0.005), 3)
    chosen = next((float(t) for t in grid if outcome(halves["tune"], enrolled, t).false_names
                   == 0), None)
    print(f"lowest threshold with no false name on the tune half: {chosen}")
    for half, conversations in halves.items():
        print(f"\n{half} half: {len(conversations)} conversations, "
              f"{sum(len(c.speakers) for c in conversations)} speakers found, "
              f"{len(enrolled)} voices enrolled; "
              f"EER {100 * equal_error_rate(conversations, enrolled):.1f} %")
        wanted = [*args.thresholds, shipped] + ([chosen] if chosen is not None else [])
        for threshold in sorted(set(wanted)):
            o = outcome(conversations, enrolled, threshold)
            mark = " (shipped)" if threshold == shipped else \
                " (chosen on tune)" if threshold == chosen else ""
            print(f"  threshold {threshold:.3f}{mark}: false names {o.false_names} in "
                  f"{o.enrolled_trials + o.stranger_trials} trials; named right "
                  f"{o.named_right}/{o.enrolled_trials} "
                  f"({100 * o.named_right / max(o.enrolled_trials, 1):.0f} %)")


if __name__ == "__main__":
    main()
