"""`hark live`: transcribe as the audio comes, from a file or from standard input.

    hark live talk.mp3 --realtime                 # played at real speed
    ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | hark live -

Finals are printed as lines on stdout; on a terminal the phrase in progress is shown
on stderr and rewritten in place. `-o FILE.srt` (or .vtt, .txt, .json, .tsv) also
writes the finals as a transcript when the stream ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import numpy as np
import typer

from hark.cli.console import err, fail
from hark.config import get_settings
from hark.errors import HarkError, OptionError
from hark.pipeline import writers
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.engines.select import borrow_engine, engine_cache, resolve_model
from hark.pipeline.live import LiveEvent, LiveTranscriber
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.pcm import SAMPLE_RATES, Pcm16Decoder
from hark.pipeline.transcript import Segment, Transcript

PIECE_SECONDS = 0.1


def live(
    source: Annotated[str, typer.Argument(help="An audio or video file, or - for raw "
                      "16-bit little-endian mono PCM on standard input.")],
    model: Annotated[str | None, typer.Option("-m", "--model", help="Model name or path; "
                     "default HARK_DEFAULT_MODEL.")] = None,
    language: Annotated[str | None, typer.Option("-l", "--language",
                        help="Language code; omit to detect on the first phrase.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Feed a file at the speed it "
                        "plays, as a microphone would.")] = False,
    sample_rate: Annotated[int, typer.Option(help="Sample rate of standard input's PCM.")]
    = SAMPLE_RATE,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Also write the "
                      "finals to this file; its extension names the format.")] = None,
) -> None:
    """Transcribe a stream as it arrives: partial words, then final phrases."""
    settings = get_settings()
    fmt = output.suffix.lstrip(".").lower() if output else None
    if fmt is not None and fmt not in writers.FORMATS:
        fail(OptionError(f"cannot tell the format of {output}: use one of "
                         f".{', .'.join(writers.FORMATS)}", field="output"), 2)
    if sample_rate not in SAMPLE_RATES:
        fail(OptionError("--sample-rate must be one of " + ", ".join(map(str, SAMPLE_RATES)),
                         field="sample_rate"), 2)
    try:
        name = resolve_model(model, settings, language)
        options = TranscribeOptions(model=name, language=language)
        pieces = _stdin_pieces(sys.stdin.buffer, sample_rate) if source == "-" else \
            _file_pieces(Path(source), realtime)
        finals: list[Segment] = []
        with borrow_engine(name, settings) as engine:
            transcriber = LiveTranscriber(engine, options)
            for piece in pieces:
                finals += _show(transcriber.feed(piece))
            finals += _show(transcriber.finish())
            model_name = engine.name
        if output is not None and fmt is not None:
            end = transcriber.received / SAMPLE_RATE
            writers.write(Transcript(text=" ".join(s.text for s in finals),
                                     language=transcriber.language, language_probability=None,
                                     duration=end, model=model_name, segments=finals),
                          fmt, output)
    except HarkError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        engine_cache(settings).clear()


def _show(events: list[LiveEvent]) -> list[Segment]:
    """Print finals as lines and, on a terminal, the partial in place; the finals."""
    finals: list[Segment] = []
    live_line = err.is_terminal
    for event in events:
        if event.kind == "final" and event.segment is not None:
            if live_line:
                err.file.write("\r\033[K")
            start, end = event.segment.start, event.segment.end
            print(f"[{start:8.2f} → {end:8.2f}] {event.segment.text}", flush=True)
            finals.append(event.segment)
        elif event.kind == "partial" and event.segment is not None and live_line:
            err.file.write("\r\033[K… " + event.segment.text[-(err.width - 3):])
            err.file.flush()
    return finals


def _file_pieces(path: Path, realtime: bool) -> Iterator[np.ndarray]:
    audio = load_audio(path)[1]
    step = int(PIECE_SECONDS * SAMPLE_RATE)
    started = time.monotonic()
    for start in range(0, audio.shape[0], step):
        if realtime:
            time.sleep(max(0.0, started + start / SAMPLE_RATE - time.monotonic()))
        yield np.asarray(audio[start:start + step], dtype=np.float32)


def _stdin_pieces(stream: BinaryIO, sample_rate: int) -> Iterator[np.ndarray]:
    decoder = Pcm16Decoder(sample_rate)
    # read1 returns what the pipe holds now instead of waiting for a full buffer.
    read = getattr(stream, "read1", stream.read)
    while data := read(int(PIECE_SECONDS * sample_rate) * 2):
        yield decoder.decode(data)
    yield decoder.decode(b"", last=True)
