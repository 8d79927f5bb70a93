"""`hark eval`: error rates and speed on a manifest of reference transcripts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError
from hark.evaluation.asr import EvalReport, ItemResult, evaluate_asr, read_manifest
from hark.evaluation.diarization import (
    COLLARS,
    DiarizationResult,
    count_accuracy,
    evaluate_diarization,
    pooled,
    pooled_overlap_miss,
    pooled_word_speaker_error,
    read_diarization_manifest,
)
from hark.evaluation.scoring import uses_characters
from hark.pipeline.diarization.select import diarizer_cache
from hark.pipeline.engines.cache import ModelCache
from hark.pipeline.engines.select import engine_cache
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.vad import VadOptions


@contextmanager
def _failing_cleanly(*caches: ModelCache[Any]) -> Iterator[None]:
    """Ends the command with the error's message on a HarkError; frees the loaded
    models either way."""
    try:
        yield
    except HarkError as exc:
        fail(exc)
    finally:
        for models in caches:
            models.clear()


def evaluate(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest (id, audio, text, language).")],
    model: Annotated[str | None, typer.Option(
        "-m", "--model", help="Model name or path; default HARK_DEFAULT_MODEL.")] = None,
    languages: Annotated[str | None, typer.Option("--languages",
                         help="Only these comma-separated languages.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report "
                        "as JSON here.")] = None,
    no_vad: Annotated[bool, typer.Option(
        "--no-vad", help="Decode whole recordings, silence included.")] = False,
    beam_size: Annotated[int, typer.Option(help="Beam size (Whisper).")] = 5,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (Whisper).")] = None,
    diarization: Annotated[bool, typer.Option("--diarization", help="Score speaker "
                           "diarization (DER) against RTTM references instead.")] = False,
    oracle_speakers: Annotated[bool, typer.Option("--oracle-speakers", help="With "
                               "--diarization: give the diarizer the true speaker count.")]
    = False,
    words: Annotated[bool, typer.Option("--words", help="With --diarization: also "
                     "transcribe (--model) with diarization, and score the transcript's "
                     "speaker segments (DER) and each word's speaker.")] = False,
) -> None:
    """Score transcripts (WER; CER for ja/ko/zh) or, with --diarization, speaker turns (DER)."""
    settings = get_settings()
    try:
        options = TranscribeOptions(model=model, vad=None if no_vad else VadOptions(),
                                    beam_size=beam_size, batch_size=batch_size)
    except HarkError as exc:
        fail(exc)
    if diarization:
        evaluate_speakers(manifest, oracle_speakers, json_out, options if words else None)
        return
    if words:
        raise typer.BadParameter("--words goes with --diarization", param_hint="--words")
    wanted = {x.strip() for x in languages.split(",")} if languages else None
    with _failing_cleanly(engine_cache(settings)):
        items = read_manifest(manifest, wanted)
        out = Console(highlight=False)
        table = Table("id", "lang", "audio s", "x RT", "metric", "rate", "errors/len",
                      box=None)

        def show(result: ItemResult) -> None:
            if result.errors is None:
                table.add_row(result.item.id, result.item.language, "-", "-", "-", "skipped",
                              result.error or "")
                return
            table.add_row(result.item.id, result.item.language, f"{result.duration:.1f}",
                          f"{result.speed:.1f}", result.metric, f"{result.errors.rate:.3f}",
                          f"{result.errors.errors}/{result.errors.reference_length}")

        with err.status(f"Evaluating {len(items)} items"):
            report = evaluate_asr(items, options, settings, on_result=show)
    out.print(f"Model: {report.model}")
    out.print(table)
    print_summary(out, report)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        err.print(f"wrote {json_out}", markup=False)


def print_summary(out: Console, report: EvalReport) -> None:
    summary = Table("language", "items", "metric", "corpus rate", "audio s", "x real time",
                    box=None, title="Corpus")
    for language, row in report.summary().items():
        metric = "CER" if uses_characters(language) else "WER"
        summary.add_row(language, str(int(row["items"])), metric, f"{row['error_rate']:.3f}",
                        f"{row['audio_seconds']:.1f}", f"{row['real_time_factor']:.1f}")
    out.print(summary)
    skipped = [r for r in report.items if r.errors is None]
    if skipped:
        out.print(f"{len(skipped)} item(s) not scored (see table)")


def evaluate_speakers(manifest: Path, oracle_speakers: bool, json_out: Path | None,
                      transcribe: TranscribeOptions | None) -> None:
    settings = get_settings()
    out = Console(highlight=False)
    extra = ("transcript DER c0", "word speaker err") if transcribe is not None else ()
    table = Table("id", "DER c0", "miss", "false alarm", "confusion", "DER c0.25",
                  "overlap miss", "speakers found/ref", "x RT", *extra, box=None)

    def show(result: DiarizationResult) -> None:
        if result.error is not None:
            table.add_row(result.item.id, *["-"] * (8 + len(extra)))
            err.print(f"error: {result.item.id}: {result.error}", markup=False)
            return
        c0, c25 = result.components["collar 0"], result.components["collar 0.25"]
        overlap = (f"{result.overlap_missed_seconds / result.overlap_seconds:.3f}"
                   if result.overlap_seconds else "-")
        words = []
        if transcribe is not None and result.word_errors is not None:
            wrong, scored = result.word_errors
            words = [f"{result.transcript_components['collar 0']['der']:.3f}",
                     f"{wrong / scored:.3f}" if scored else "-"]
        table.add_row(result.item.id, f"{c0['der']:.3f}", f"{c0['miss']:.3f}",
                      f"{c0['false_alarm']:.3f}", f"{c0['confusion']:.3f}", f"{c25['der']:.3f}",
                      overlap, f"{result.found_speakers}/{result.reference_speakers}",
                      f"{result.speed:.1f}", *words)

    caches = [diarizer_cache(settings)] + ([engine_cache(settings)] if transcribe else [])
    with _failing_cleanly(*caches):
        items = read_diarization_manifest(manifest)
        with err.status(f"Diarizing {len(items)} items"):
            results = evaluate_diarization(items, settings, oracle_speakers, on_result=show,
                                           transcribe=transcribe)
    out.print(table)
    summary = {name: pooled(results, name) for name in COLLARS}
    for name, row in summary.items():
        out.print(f"overall DER ({name}): {row['der']:.3f} (miss {row['miss']:.3f}, "
                  f"false alarm {row['false_alarm']:.3f}, confusion {row['confusion']:.3f})")
    word_error = pooled_word_speaker_error(results)
    if transcribe is not None:
        seen = pooled(results, "collar 0", transcript=True)
        out.print(f"transcript's speaker segments, DER (collar 0): {seen['der']:.3f}")
        out.print("word-speaker error: " + ("-" if word_error is None else f"{word_error:.3f}"))
    right = sum(r.count_right for r in results)
    out.print(f"speaker count right: {right}/{len(results)} ({count_accuracy(results):.3f})")
    overlap_missed = pooled_overlap_miss(results)
    if overlap_missed is not None:
        out.print(f"overlap miss: {overlap_missed:.3f} of the reference's overlapped speech")
    audio = sum(r.duration for r in results if r.error is None)
    spent = sum(r.seconds for r in results if r.error is None)
    out.print(f"speed: {audio:.1f} s of audio in {spent:.1f} s = "
              f"{audio / spent if spent else 0:.1f}x real time")
    if json_out is not None:
        report = {"summary": summary, "speaker_count_accuracy": count_accuracy(results),
                  "overlap_miss": overlap_missed, "word_speaker_error": word_error,
                  "transcript_summary": {name: pooled(results, name, transcript=True)
                                         for name in COLLARS} if transcribe else None,
                  "items": [
            {"id": r.item.id, "components": r.components, "found_speakers": r.found_speakers,
             "transcript_components": r.transcript_components or None,
             "word_errors": r.word_errors,
             "reference_speakers": r.reference_speakers, "duration": r.duration,
             "overlap_seconds": r.overlap_seconds,
             "overlap_missed_seconds": r.overlap_missed_seconds,
             "seconds": r.seconds, "error": r.error} for r in results]}
        json_out.write_text(json.dumps(report, indent=2))
    if any(r.error for r in results):
        raise typer.Exit(1)
