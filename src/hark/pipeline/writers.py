"""Transcript writers: the downloadable formats (json, txt, srt, vtt, tsv)."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

from hark.errors import OptionError
from hark.pipeline.captions import (
    CaptionOptions,
    Cue,
    build_cues,
    speaker_prefix,
    to_milliseconds,
)
from hark.pipeline.transcript import Segment, Transcript, join_segments

__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "CaptionOptions",
    "Cue",
    "build_cues",
    "render",
    "write",
]

Format = Literal["json", "txt", "srt", "vtt", "tsv", "rttm"]
FORMATS: tuple[str, ...] = get_args(Format)

MEDIA_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "json": "application/json",
        "txt": "text/plain; charset=utf-8",
        "srt": "application/x-subrip",
        "vtt": "text/vtt",
        "tsv": "text/tab-separated-values",
        "rttm": "text/plain; charset=utf-8",
    }
)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _timestamp(seconds: float, separator: str) -> str:
    # Hours simply grow past two digits; both formats' parsers accept that.
    hours, rest = divmod(to_milliseconds(seconds), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _render_json(transcript: Transcript, options: CaptionOptions) -> str:
    return json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _render_txt(transcript: Transcript, options: CaptionOptions) -> str:
    segments = [s for s in transcript.segments if _clean(s.text)]
    if not any(s.speaker is not None for s in transcript.segments):
        return "".join(_clean(s.text) + "\n" for s in segments)
    # Diarized text reads like a script: one paragraph per speaker turn.
    turns: list[tuple[str | None, list[Segment]]] = []
    for segment in segments:
        if turns and turns[-1][0] == segment.speaker:
            turns[-1][1].append(segment)
        else:
            turns.append((segment.speaker, [segment]))
    paragraphs = []
    for speaker, turn in turns:
        label = _clean(transcript.speaker_label(speaker) or "")
        body = _clean(join_segments(turn, transcript.language))
        paragraphs.append(f"{label}: {body}" if label else body)
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""


def _render_srt(transcript: Transcript, options: CaptionOptions) -> str:
    blocks = []
    for index, cue in enumerate(build_cues(transcript, options), start=1):
        lines = list(cue.lines)
        lines[0] = speaker_prefix(cue.speaker) + lines[0]
        timing = f"{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}"
        blocks.append(f"{index}\n{timing}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_cue(cue: Cue) -> str:
    lines = [_vtt_escape(line) for line in cue.lines]
    if cue.speaker:
        lines[0] = f"<v {_vtt_escape(cue.speaker)}>{lines[0]}"
    timing = f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}"
    return f"{timing}\n" + "\n".join(lines) + "\n"


def _render_vtt(transcript: Transcript, options: CaptionOptions) -> str:
    return "\n".join(["WEBVTT\n", *(_vtt_cue(c) for c in build_cues(transcript, options))])


def _tsv_row(transcript: Transcript, segment: Segment) -> list[str | int]:
    start = to_milliseconds(segment.start)
    end = max(to_milliseconds(segment.end), start)
    label = _clean(transcript.speaker_label(segment.speaker) or "")
    return [start, end, label, _clean(segment.text)]


def _render_tsv(transcript: Transcript, options: CaptionOptions) -> str:
    buffer = io.StringIO()
    # The csv module quotes only fields holding a double quote, so spreadsheet and
    # dataframe readers get the text back intact.
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(["start", "end", "speaker", "text"])
    writer.writerows(_tsv_row(transcript, s) for s in transcript.segments if _clean(s.text))
    return buffer.getvalue()


def render_rttm(transcript: Transcript, name: str = "audio") -> str:
    """NIST RTTM speaker turns, one line per diarized segment; empty when not diarized."""
    file_id = "_".join(name.split()) or "audio"
    lines = []
    for segment in transcript.segments:
        label = transcript.speaker_label(segment.speaker)
        if label is None or segment.end <= segment.start:
            continue
        lines.append(
            f"SPEAKER {file_id} 1 {segment.start:.3f} {segment.end - segment.start:.3f} "
            f"<NA> <NA> {'_'.join(label.split())} <NA> <NA>\n")
    return "".join(lines)


_RENDERERS: Mapping[str, Callable[[Transcript, CaptionOptions], str]] = {
    "json": _render_json,
    "txt": _render_txt,
    "srt": _render_srt,
    "vtt": _render_vtt,
    "tsv": _render_tsv,
}


def render(
    transcript: Transcript, fmt: str, options: CaptionOptions | None = None, *,
    name: str = "audio",
) -> str:
    """The transcript as text in one of FORMATS; caption options apply to srt and vtt,
    `name` is the recording's id in rttm."""
    fmt = fmt.strip().lower()
    if fmt == "rttm":
        return render_rttm(transcript, name)
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise OptionError(
            f"Unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}",
            field="format",
        )
    return renderer(transcript, options or CaptionOptions())


def write(
    transcript: Transcript, fmt: str, path: Path, *, options: CaptionOptions | None = None
) -> Path:
    """Write the transcript to `path`; readers never see a partly written file."""
    path = Path(path)
    content = render(transcript, fmt, options, name=path.stem)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # Exclusive creation keeps the umask-derived mode a plain open gives.
        with open(temp, "x", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
