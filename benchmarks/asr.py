"""Accuracy and speed of the default transcript against bare faster-whisper and pocketsphinx.

    python -m benchmarks.asr [--only english|languages|modes]

english    The English corpus items, side by side, one run each:
           - Hark's default: ONE `hark transcribe` run over every file, language not given,
             start-up (interpreter, imports, model load) included in the time;
           - bare faster-whisper with the same model, sequential and batched (VAD filter on,
             language given, model load included);
           - tiny.en through Hark, and pocketsphinx through Hark.
           WER for the whole set and for its two speaker-disjoint halves: Hark's choices
           (VAD padding, phrase cuts, the `auto` rule) were made on the tuning half only.
languages  Every corpus language with base through Hark, language detected: WER (CER for
           ja/ko) and x real time.
modes      Hark with base, batched against sequential, on the English items.
noise      tiny.en against base on the English items with noise mixed in at 10 and 5 dB
           SNR (low-passed white noise, seeded): the evidence behind `auto` preferring
           base for English, where the two are equal on the clean items.

x real time is audio seconds over wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import corpus_dir, machine, run_measured
from hark.config import Settings
from hark.evaluation.asr import ManifestItem, evaluate_asr, read_manifest
from hark.evaluation.scoring import ErrorCounts, count_errors, total
from hark.pipeline import model_packages
from hark.pipeline.audio import load_audio
from hark.pipeline.engines.select import engine_cache
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_audio

# Speakers whose recordings choices were tuned on; the rest (other people entirely) is
# the held-out half.
TUNING_PREFIXES = ("jfk_", "osr_", "librispeech_3752", "librispeech_61-", "librivox_",
                   "mfa_")


def half(item_id: str) -> str:
    return "tuning" if item_id.startswith(TUNING_PREFIXES) else "held-out"


def report(label: str, counts: dict[str, ErrorCounts], audio: float, seconds: float) -> None:
    every = total(list(counts.values()))
    halves = {h: total([c for i, c in counts.items() if half(i) == h])
              for h in ("tuning", "held-out")}
    parts = ", ".join(f"{h} {c.rate:.3f} ({c.errors}/{c.reference_length})"
                      for h, c in halves.items())
    print(f"  {label:<44} WER {every.rate:.3f} ({every.errors}/{every.reference_length}; "
          f"{parts})  {audio / seconds:5.1f}x real time ({seconds:.1f} s)", flush=True)


def english_items() -> list[ManifestItem]:
    return read_manifest(corpus_dir() / "asr" / "manifest.jsonl", {"en"})


def hark_cli(items: list[ManifestItem], env: dict[str, str],
             args: list[str]) -> tuple[dict[str, ErrorCounts], float]:
    """One `hark transcribe` over every file; errors per item and wall seconds."""
    with tempfile.TemporaryDirectory() as out:
        result = run_measured([sys.executable, "-m", "hark", "transcribe",
                               *[str(i.audio) for i in items], "-f", "json", "-o", out, *args],
                              env=env)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        counts = {}
        for item in items:
            text = json.loads((Path(out) / f"{item.audio.stem}.json").read_text())["text"]
            counts[item.id] = count_errors(item.text, text, "en")
    return counts, result.seconds


def bare(items: list[ManifestItem], path: Path, batched: bool
         ) -> tuple[dict[str, ErrorCounts], float]:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    started = time.perf_counter()
    model = WhisperModel(str(path), device="cpu", compute_type="int8")
    pipeline = BatchedInferencePipeline(model)
    counts = {}
    for item in items:
        if batched:
            segments, _ = pipeline.transcribe(str(item.audio), language="en", beam_size=5,
                                              batch_size=8, word_timestamps=True)
        else:
            segments, _ = model.transcribe(str(item.audio), language="en", beam_size=5,
                                           vad_filter=True, word_timestamps=True)
        text = " ".join(s.text.strip() for s in segments)
        counts[item.id] = count_errors(item.text, text, "en")
    return counts, time.perf_counter() - started


def in_process(items: list[ManifestItem], options: TranscribeOptions,
               settings: Settings) -> tuple[dict[str, ErrorCounts], float]:
    started = time.perf_counter()
    evaluation = evaluate_asr(items, options, settings)
    seconds = time.perf_counter() - started
    engine_cache(settings).clear()
    return {r.item.id: r.errors for r in evaluation.items if r.errors is not None}, seconds


def english(settings: Settings) -> None:
    items = english_items()
    audio = sum(load_audio(i.audio)[1].size for i in items) / 16000
    tuning = sum(half(i.id) == "tuning" for i in items)
    print(f"English: {len(items)} items, {audio:.1f} s of audio "
          f"({tuning} tuning / {len(items) - tuning} held-out)")
    base = model_packages.model_path(model_packages.BY_MODEL["base"], settings.models_path)
    tiny = model_packages.model_path(model_packages.BY_MODEL["tiny.en"], settings.models_path)
    env = {"HARK_DATA_DIR": str(settings.data_dir)}
    runs: list[tuple[str, Callable[[], tuple[dict[str, ErrorCounts], float]]]] = [
        ("Hark default (auto = base), one CLI run", lambda: hark_cli(items, env, [])),
        ("bare faster-whisper base, batched", lambda: bare(items, base, True)),
        ("bare faster-whisper base, sequential", lambda: bare(items, base, False)),
        ("Hark tiny.en, one CLI run", lambda: hark_cli(items, env, ["-m", "tiny.en"])),
        ("bare faster-whisper tiny.en, batched", lambda: bare(items, tiny, True)),
        ("bare faster-whisper tiny.en, sequential", lambda: bare(items, tiny, False)),
        ("Hark pocketsphinx, one CLI run",
         lambda: hark_cli(items, env, ["-m", "pocketsphinx"])),
    ]
    for label, run in runs:
        counts, seconds = run()
        report(label, counts, audio, seconds)


def languages(settings: Settings) -> None:
    items = [i for i in read_manifest(corpus_dir() / "asr" / "manifest.jsonl")]
    print(f"Every language with base, language detected ({len(items)} items):")
    evaluation = evaluate_asr(items, TranscribeOptions(model="base"), settings,
                              detect_language=True)
    wrong = [(r.item.id, r.language) for r in evaluation.items if r.language != r.item.language]
    print(f"  language detected right on {len(items) - len(wrong)} of {len(items)} {wrong}")
    for language, row in evaluation.summary().items():
        metric = "CER" if language in ("ja", "ko") else "WER"
        print(f"  {language}: {int(row['items'])} items, {metric} {row['error_rate']:.3f}, "
              f"{row['real_time_factor']:.1f}x real time", flush=True)
    engine_cache(settings).clear()


def modes(settings: Settings) -> None:
    items = english_items()
    audio = sum(load_audio(i.audio)[1].size for i in items) / 16000
    print("Hark with base on the English items, batched against sequential:")
    for label, batch in (("batched (HARK_BATCH_SIZE 8)", 8), ("sequential", 0)):
        counts, seconds = in_process(items, TranscribeOptions(model="base", batch_size=batch),
                                     settings)
        report(label, counts, audio, seconds)


def with_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = np.convolve(rng.standard_normal(samples.size), np.ones(8) / 8, mode="same")
    gain = np.sqrt(np.mean(samples ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    mixed: np.ndarray = np.clip(samples + noise * gain, -1.0, 1.0).astype(np.float32)
    return mixed


def noise(settings: Settings) -> None:
    items = english_items()
    clean = {i.id: load_audio(i.audio)[1] for i in items}
    audio = sum(a.size for a in clean.values()) / 16000
    print("English items with noise, language given:")
    for snr in (10.0, 5.0):
        rng = np.random.default_rng(1)
        noisy = {k: with_noise(v, snr, rng) for k, v in clean.items()}
        for model in ("tiny.en", "base"):
            started = time.perf_counter()
            counts = {i.id: count_errors(i.text, transcribe_audio(
                noisy[i.id], TranscribeOptions(model=model, language="en"), settings).text,
                "en") for i in items}
            report(f"{model} at {snr:g} dB SNR", counts, audio, time.perf_counter() - started)
        engine_cache(settings).clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["english", "languages", "modes", "noise"])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(_env_file=None, data_dir=Path(data), model_packages=True)
        for name, part in (("english", english), ("languages", languages), ("modes", modes),
                           ("noise", noise)):
            if args.only in (None, name):
                part(settings)


if __name__ == "__main__":
    main()
