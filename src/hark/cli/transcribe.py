"""`hark transcribe` and `hark demo`."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from hark.cli.console import err, error_line, fail
from hark.config import Settings, get_settings
from hark.errors import HarkError, OptionError
from hark.pipeline import writers
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.diarization.identify import VoiceProfile
from hark.pipeline.engines.select import check_model_name, engine_cache, resolve_model
from hark.pipeline.options import Task, TranscribeOptions
from hark.pipeline.run import Hooks, transcribe_file
from hark.pipeline.vad import VadOptions


def parse_formats(value: str) -> list[str]:
    formats = [f.strip().lower() for f in value.split(",") if f.strip()]
    unknown = [f for f in formats if f not in writers.FORMATS]
    if unknown or not formats:
        raise OptionError(
            f"unknown output format {', '.join(unknown) or value!r}; "
            f"choose from {', '.join(writers.FORMATS)}", field="format")
    return formats


def describe_model(requested: str | None, settings: Settings, language: str | None) -> str:
    model = resolve_model(requested, settings, language)
    if (requested or settings.default_model) == "auto":
        why = "best installed Whisper model" if model != "pocketsphinx" else (
            "no Whisper model installed; pip install 'hark[whisper-base]' for a far "
            "more accurate one that knows 99 languages")
        return f"Model: {model} ({why})"
    return f"Model: {model}"


def transcribe(
    files: Annotated[list[Path], typer.Argument(help="Audio or video files.")],
    model: Annotated[str | None, typer.Option("-m", "--model", help="Model name or path; "
                     "default HARK_DEFAULT_MODEL.")] = None,
    language: Annotated[str | None, typer.Option("-l", "--language",
                        help="Language code or English name (de, german); omit to "
                             "detect.")] = None,
    task: Annotated[str, typer.Option(help="transcribe or translate (to English).")]
    = "transcribe",
    formats: Annotated[str, typer.Option("-f", "--format",
                       help="Comma-separated: json,txt,srt,vtt,tsv,rttm.")] = "txt",
    output_dir: Annotated[Path | None, typer.Option("-o", "--output-dir",
                          help="Write FILE.<format> here instead of stdout.")] = None,
    no_vad: Annotated[bool, typer.Option("--no-vad", help="Decode the whole recording, "
                      "silence included.")] = False,
    vad_threshold: Annotated[float, typer.Option(help="Speech probability threshold.")] = 0.5,
    min_silence_ms: Annotated[int, typer.Option(help="Silence that ends a speech region.")]
    = 500,
    speech_pad_ms: Annotated[int, typer.Option(help="Padding around speech regions.")] = 200,
    max_chunk_seconds: Annotated[float | None, typer.Option(help="Longest chunk handed to "
                                 "the engine.")] = None,
    beam_size: Annotated[int, typer.Option(help="Beam size (Whisper).")] = 5,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature; omit "
                           "for the fallback ladder (Whisper).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batched inference size; 0 for "
                          "sequential (Whisper).")] = None,
    initial_prompt: Annotated[str | None, typer.Option(help="Text to prime the "
                              "model with (Whisper).")] = None,
    hotwords: Annotated[str | None, typer.Option(help="Words to favour (Whisper).")] = None,
    no_word_timestamps: Annotated[bool, typer.Option(
        "--no-word-timestamps", help="Leave word timings out of the output.")] = False,
    diarize: Annotated[bool, typer.Option("--diarize", help="Label who spoke when.")] = False,
    num_speakers: Annotated[int | None, typer.Option(help="Exact number of speakers.")] = None,
    min_speakers: Annotated[int | None, typer.Option(help="At least this many speakers.")]
    = None,
    max_speakers: Annotated[int | None, typer.Option(help="At most this many speakers.")]
    = None,
    identify_speakers: Annotated[bool, typer.Option(
        "--identify-speakers", help="Name speakers after enrolled voice profiles.")] = False,
) -> None:
    """Transcribe audio or video files."""
    settings = get_settings()
    try:
        output_formats = parse_formats(formats)
        vad = None if no_vad else VadOptions(
            threshold=vad_threshold, min_silence_ms=min_silence_ms,
            speech_pad_ms=speech_pad_ms, max_chunk_seconds=max_chunk_seconds)
        options = TranscribeOptions(
            model=model, language=language, task=_task(task), vad=vad,
            word_timestamps=not no_word_timestamps, beam_size=beam_size,
            temperature=temperature, batch_size=batch_size, initial_prompt=initial_prompt,
            hotwords=hotwords, diarize=diarize or identify_speakers,
            speakers=DiarizationOptions(num_speakers, min_speakers, max_speakers),
            identify_speakers=identify_speakers,
        )
        if "rttm" in output_formats and not options.diarize:
            raise OptionError("rttm holds speaker turns: add --diarize to write it",
                              field="format")
        check_model_name(resolve_model(model, settings, options.language), settings)
        err.print(describe_model(model, settings, options.language), markup=False)
    except HarkError as exc:
        fail(exc, code=2)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    try:
        profiles = _profiles(settings) if identify_speakers else []
        for path in files:
            if not _transcribe_one(path, options, output_formats, output_dir, settings,
                                   profiles):
                failures += 1
    finally:
        engine_cache(settings).clear()
    if failures:
        raise typer.Exit(1)


def _profiles(settings: Settings) -> list[VoiceProfile]:
    from hark.db import DEFAULT_TENANT_ID, open_database
    from hark.speakers.service import profiles_for_matching

    try:
        with open_database(settings.database) as db, db.session() as session:
            return profiles_for_matching(session, DEFAULT_TENANT_ID, embedder=settings.diarizer)
    except HarkError as exc:
        fail(exc)


def _task(value: str) -> Task:
    if value not in ("transcribe", "translate"):
        raise OptionError(f"task must be 'transcribe' or 'translate', not {value!r}",
                          field="task")
    return "translate" if value == "translate" else "transcribe"


def _transcribe_one(
    path: Path, options: TranscribeOptions, formats: list[str], output_dir: Path | None,
    settings: Settings, profiles: list[VoiceProfile],
) -> bool:
    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[stage]}", markup=False), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    )
    with progress:
        task_id = progress.add_task(path.name, total=1.0, stage="starting")

        def on_progress(stage: str, fraction: float) -> None:
            progress.update(task_id, completed=fraction, stage=stage)

        try:
            transcript = transcribe_file(path, options, settings,
                                         Hooks(on_progress=on_progress), profiles)
        except (HarkError, OSError) as exc:
            progress.update(task_id, stage="failed")
            progress.stop()
            err.print(error_line(exc, str(path)), markup=False)
            return False
    for warning in transcript.warnings:
        err.print(f"warning: {path}: {warning}", markup=False)
    for fmt in formats:
        if output_dir is not None:
            target = writers.write(transcript, fmt, output_dir / f"{path.stem}.{fmt}")
            err.print(f"wrote {target}", markup=False)
        else:
            sys.stdout.write(writers.render(transcript, fmt, name=path.stem))
            sys.stdout.flush()
    return True


def sample_path() -> Path:
    return Path(str(resources.files("hark") / "samples" / "welcome.ogg"))


def demo(
    model: Annotated[str | None, typer.Option("-m", "--model", help="Model name or path; "
                     "default HARK_DEFAULT_MODEL.")] = None,
) -> None:
    """Transcribe the recording bundled with Hark and print the transcript."""
    transcribe([sample_path()], model=model, formats="txt", language="en")
