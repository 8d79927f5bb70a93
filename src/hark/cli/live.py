"""`hark live`: transcribe as the audio comes, from a file, standard input or the
microphone.

    hark live --mic                               # the default microphone (hark[mic])
    hark live talk.mp3 --realtime                 # played at real speed
    ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | hark live -
    ffmpeg -i URL -c:a libopus -f webm - | hark live - --encoding container
    hark live talk.mp3 --server https://hark.example --save   # on a server, kept as a job

Finals are printed as lines on stdout; on a terminal the phrase in progress is shown
on stderr and rewritten in place. `-o FILE.srt` (or .vtt, .txt, .json, .tsv) also
writes the finals as a transcript when the stream ends.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import numpy as np
import typer

from hark.cli.console import err, fail
from hark.cli.live_remote import ServerError, StreamResult, stream
from hark.cli.microphone import microphone_frames
from hark.config import get_settings
from hark.errors import HarkError, OptionError
from hark.pipeline import writers
from hark.pipeline.audio import SAMPLE_RATE, load_audio
from hark.pipeline.engines.select import borrow_engine, engine_cache, resolve_model
from hark.pipeline.live import LiveEvent, LiveTranscriber
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.pcm import ENCODINGS, SAMPLE_RATES, open_stream_decoder
from hark.pipeline.transcript import Segment, Transcript

PIECE_SECONDS = 0.1
STDIN_READ_BYTES = 4096


def live(
    source: Annotated[str | None, typer.Argument(
        help="An audio or video file, or - for standard input (raw PCM, or a container "
             "with --encoding container); none with --mic.")] = None,
    mic: Annotated[bool, typer.Option("--mic", help="Record from the microphone (Ctrl-C "
                   "stops).")] = False,
    device: Annotated[str | None, typer.Option(help="With --mic: the input device, by index "
                      "or part of its name (default: the system's).")] = None,
    model: Annotated[str | None, typer.Option("-m", "--model", help="Model name or path; "
                     "default HARK_DEFAULT_MODEL.")] = None,
    language: Annotated[str | None, typer.Option("-l", "--language",
                        help="Language code; omit to detect on the first phrase.")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="Feed a file at the speed it "
                        "plays, as a microphone would.")] = False,
    sample_rate: Annotated[int, typer.Option(help="Sample rate of standard input's PCM.")]
    = SAMPLE_RATE,
    encoding: Annotated[str, typer.Option(help="Standard input's audio: pcm16 (16-bit "
                        "little-endian mono) or container (WebM/Opus, Ogg, MP3, FLAC, "
                        "WAV).")] = "pcm16",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Also write the "
                      "finals to this file; its extension names the format.")] = None,
    server: Annotated[str | None, typer.Option(help="Transcribe on this Hark server "
                      "(http(s)://host) instead of here.")] = None,
    key: Annotated[str | None, typer.Option(envvar="HARK_API_KEY", help="The server's API "
                   "key.")] = None,
    save: Annotated[bool, typer.Option("--save", help="Keep the stream as a job on the "
                    "server (transcribed again as a whole).")] = False,
    diarize: Annotated[bool, typer.Option("--diarize", help="With --save: find who spoke "
                       "when in the saved job.")] = False,
) -> None:
    """Transcribe a stream as it arrives: partial words, then final phrases."""
    fmt = output.suffix.lstrip(".").lower() if output else None
    if fmt is not None and fmt not in writers.FORMATS:
        fail(OptionError(f"cannot tell the format of {output}: use one of "
                         f".{', .'.join(writers.FORMATS)}", field="output"), 2)
    if sample_rate not in SAMPLE_RATES:
        fail(OptionError("--sample-rate must be one of " + ", ".join(map(str, SAMPLE_RATES)),
                         field="sample_rate"), 2)
    if encoding not in ENCODINGS:
        fail(OptionError("--encoding must be one of " + ", ".join(ENCODINGS),
                         field="encoding"), 2)
    if (save or diarize) and server is None:
        fail(OptionError("--save and --diarize keep the stream as a job on a server: "
                         "give --server (here, -o writes the transcript)", field="save"), 2)
    if diarize and not save:
        fail(OptionError("--diarize needs --save", field="diarize"), 2)
    if (source is None) == (not mic):
        fail(OptionError("give a file, - for standard input, or --mic (one of them)",
                         field="source"), 2)
    try:
        if mic:
            frames: Iterator[bytes] = _until_interrupted(microphone_frames(device))
            encoding, sample_rate = "pcm16", SAMPLE_RATE
        elif source == "-":
            frames = _stdin_frames(sys.stdin.buffer)
        else:
            assert source is not None
            frames, encoding, sample_rate = _file_frames(Path(source), realtime), "pcm16", \
                SAMPLE_RATE
        if server is None:
            result = _here(frames, encoding, sample_rate, model, language)
        else:
            query = {"encoding": encoding, "sample_rate": str(sample_rate),
                     "save": str(save).lower(), "diarize": str(diarize).lower()}
            query |= {name: value for name, value in (("model", model), ("language", language))
                      if value}
            result = stream(server, key, frames, query, _print_final, _print_partial)
            if result.job_id:
                err.print(f"saved as job {result.job_id}: {server.rstrip('/')}/#/jobs/"
                          f"{result.job_id}", markup=False)
        if output is not None and fmt is not None:
            writers.write(Transcript(text=" ".join(s.text for s in result.finals),
                                     language=result.language, language_probability=None,
                                     duration=result.seconds, model=result.model,
                                     segments=result.finals), fmt, output)
    except HarkError as exc:
        fail(exc)
    except ServerError as exc:
        err.print(f"error: {exc.message} [{exc.code}]", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _here(frames: Iterator[bytes], encoding: str, sample_rate: int, model: str | None,
          language: str | None) -> StreamResult:
    """Transcribe in this process."""
    settings = get_settings()
    name = resolve_model(model, settings, language)
    decoder = open_stream_decoder(encoding, sample_rate)
    result = StreamResult()
    try:
        with borrow_engine(name, settings) as engine:
            transcriber = LiveTranscriber(engine, TranscribeOptions(model=name,
                                                                    language=language))
            for frame in frames:
                for piece in decoder.pieces(frame):
                    result.finals += _show(transcriber.feed(piece))
            for piece in decoder.pieces(b"", last=True):
                result.finals += _show(transcriber.feed(piece))
            result.finals += _show(transcriber.finish())
            result.model = engine.name
    finally:
        decoder.close()
        engine_cache(settings).clear()
    result.language = transcriber.language
    result.seconds = transcriber.received / SAMPLE_RATE
    return result


def _show(events: list[LiveEvent]) -> list[Segment]:
    """Print the events; their finals."""
    finals: list[Segment] = []
    for event in events:
        if event.segment is None:
            continue
        if event.kind == "final":
            _print_final(event.segment)
            finals.append(event.segment)
        elif event.kind == "partial":
            _print_partial(event.segment.text)
    return finals


def _print_final(segment: Segment) -> None:
    if err.is_terminal:
        err.file.write("\r\033[K")
    print(f"[{segment.start:8.2f} → {segment.end:8.2f}] {segment.text}", flush=True)


def _print_partial(text: str) -> None:
    """On a terminal, the phrase in progress, rewritten in place."""
    if err.is_terminal:
        err.file.write("\r\033[K… " + text[-(err.width - 3):])
        err.file.flush()


def _file_frames(path: Path, realtime: bool) -> Iterator[bytes]:
    """The file as 16 kHz PCM16, a tenth of a second at a time."""
    audio = load_audio(path)[1]
    step = int(PIECE_SECONDS * SAMPLE_RATE)
    started = time.monotonic()
    for start in range(0, audio.shape[0], step):
        if realtime:
            time.sleep(max(0.0, started + start / SAMPLE_RATE - time.monotonic()))
        piece = np.clip(audio[start:start + step], -1.0, 1.0) * 32767
        yield np.rint(piece).astype("<i2").tobytes()


def _until_interrupted(frames: Iterator[bytes]) -> Iterator[bytes]:
    """Ctrl-C ends a microphone stream the normal way: what was said last is still
    decoded, printed and written. The first one only asks the stream to stop (it may
    come while a phrase is being decoded); a second one quits at once."""
    stop = threading.Event()

    def ask_to_stop(_signal: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, ask_to_stop)
    try:
        for piece in frames:
            if stop.is_set():
                return
            yield piece
    finally:
        signal.signal(signal.SIGINT, previous)


def _stdin_frames(stream: BinaryIO) -> Iterator[bytes]:
    # read1 returns what the pipe holds now instead of waiting for a full buffer.
    read = getattr(stream, "read1", stream.read)
    while data := read(STDIN_READ_BYTES):
        yield data
