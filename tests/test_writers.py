"""Transcript writers, checked by parsing their output with real subtitle and CSV parsers."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import srt
import webvtt

from hark.errors import OptionError
from hark.pipeline.transcript import Segment, Speaker, Transcript, Word
from hark.pipeline.writers import (
    FORMATS,
    MEDIA_TYPES,
    CaptionOptions,
    Cue,
    build_cues,
    render,
    write,
)

LONG_WORD = "pneumonoultramicroscopicsilicovolcanoconiosis"

MONOLOGUE = (
    "Good evening, and welcome to the late edition. Tonight we look back at a naïve plan "
    "that began in a small café in Zürich, where the R&D team argued that x < y & y < z "
    "was obvious to everyone in the room. Nobody agreed. The word of the night was "
    f"{LONG_WORD}, which nobody could spell, and the quarrel lasted until dawn. In the end "
    "the engineers shipped anyway, the customers were delighted, and the owner of the café "
    "framed the receipt on the wall right next to the old espresso machine."
)


def timed_words(
    text: str, start: float, speaker: str | None = None, lead_space: bool = True
) -> list[Word]:
    """Words with plausible timings: longer words take longer, punctuation brings pauses."""
    words = []
    t = start
    for n, token in enumerate(text.split()):
        duration = min(0.12 + 0.04 * len(token), 0.9)
        prefix = " " if lead_space else ""
        words.append(Word(prefix + token, round(t, 3), round(t + duration, 3), 0.9, speaker))
        t += duration
        if token.endswith((".", "?", "!")):
            t += 0.9
        elif token.endswith(","):
            t += 0.35
        elif n % 13 == 12:
            t += 0.6
        else:
            t += 0.06
    return words


def make_segment(
    seg_id: int, text: str, start: float, speaker: str | None = None, **kwargs: bool
) -> Segment:
    words = timed_words(text, start, speaker, **kwargs)
    return Segment(seg_id, words[0].start, words[-1].end, text, speaker, words=words)


def make_transcript(segments: list[Segment], speakers: list[Speaker] | None = None) -> Transcript:
    return Transcript(
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        language="en",
        language_probability=0.97,
        duration=max((s.end for s in segments), default=0.0),
        model="test/model",
        segments=segments,
        speakers=speakers or [],
        timings={"transcribe": 1.5},
    )


def monologue() -> Transcript:
    return make_transcript([make_segment(0, MONOLOGUE, 0.5)])


def conversation() -> Transcript:
    seg0 = make_segment(
        0,
        "Thanks for joining. Could you walk us through how the migration went, "
        "and what you would do differently next time around?",
        0.0,
        "SPEAKER_00",
    )
    # Diarization gave the last words of this segment to the other speaker.
    seg1 = make_segment(
        1,
        "Sure. It went better than expected, mostly because we rehearsed twice. "
        "Wait, really twice?",
        seg0.end + 0.4,
        "SPEAKER_01",
    )
    for word in seg1.words[-2:]:
        word.speaker = "SPEAKER_00"
    seg2 = Segment(
        2,
        seg1.end + 0.3,
        seg1.end + 4.3,
        "Right, and the <draft> numbers for Q3 look fine & final to me.",
        "SPEAKER_00",
    )
    seg3 = Segment(3, seg2.end + 0.1, seg2.end + 0.5, "   ", "SPEAKER_01")
    seg4 = make_segment(
        4,
        f"Yes. The 東京 office called it {LONG_WORD} level complexity, a naïve joke.",
        seg3.end + 0.2,
        "SPEAKER_01",
        lead_space=False,
    )
    seg5 = make_segment(5, "Let me add one quick thing.", seg4.end + 0.5, "SPEAKER_02")
    speakers = [
        Speaker("SPEAKER_00", name="Alice", profile_id="p-1", similarity=0.84, speech_seconds=9.0),
        Speaker("SPEAKER_01", speech_seconds=12.0),
    ]
    return make_transcript([seg0, seg1, seg2, seg3, seg4, seg5], speakers)


@dataclass
class Expected:
    text: str
    start: float
    end: float
    label: str | None
    exact: bool


@dataclass
class Parsed:
    start: float
    end: float
    lines: list[str]
    label: str | None
    words: list[str]


def expected_words(transcript: Transcript) -> list[Expected]:
    expected = []
    for seg in transcript.segments:
        if not seg.text.strip():
            continue
        timed = [w for w in seg.words if w.word.strip()]
        if timed:
            for w in timed:
                speaker = w.speaker if w.speaker is not None else seg.speaker
                label = transcript.speaker_label(speaker)
                expected.append(Expected(w.word.strip(), w.start, w.end, label, True))
        else:
            label = transcript.speaker_label(seg.speaker)
            expected.extend(
                Expected(piece, seg.start, seg.end, label, False) for piece in seg.text.split()
            )
    return expected


SRT_LABEL = re.compile(r"^\[([^\]]+)\] ")


def parse_srt(text: str) -> list[Parsed]:
    parsed = []
    for sub in srt.parse(text):
        lines = sub.content.split("\n")
        match = SRT_LABEL.match(lines[0])
        label = match.group(1) if match else None
        body = [lines[0][match.end() if match else 0 :], *lines[1:]]
        words = " ".join(body).split()
        parsed.append(
            Parsed(sub.start.total_seconds(), sub.end.total_seconds(), lines, label, words)
        )
    return parsed


def parse_vtt(text: str) -> list[Parsed]:
    assert text.startswith("WEBVTT\n")
    parsed = []
    for caption in webvtt.from_string(text).captions:
        lines = [html.unescape(line) for line in caption.text.split("\n")]
        label = html.unescape(caption.voice) if caption.voice else None
        parsed.append(
            Parsed(
                caption.start_time.in_milliseconds() / 1000,
                caption.end_time.in_milliseconds() / 1000,
                lines,
                label,
                " ".join(lines).split(),
            )
        )
    return parsed


def check_cues(
    cues: list[Parsed], expected: list[Expected], options: CaptionOptions | None = None
) -> None:
    options = options or CaptionOptions()
    assert cues
    for cue in cues:
        assert 1 <= len(cue.lines) <= options.max_lines, cue
        for line in cue.lines:
            content = SRT_LABEL.sub("", line) if cue.label else line
            # Only a single unbreakable word may run past the limit.
            assert len(line) <= options.max_line_chars or len(content.split()) == 1, line
        assert cue.end > cue.start, cue
        assert cue.end - cue.start <= options.max_duration + 0.0005, cue
    for before, after in itertools.pairwise(cues):
        assert after.start > before.start
        assert after.start >= before.end + options.min_gap - 0.0005

    assert [w for cue in cues for w in cue.words] == [e.text for e in expected]

    position = 0
    for cue in cues:
        chunk = expected[position : position + len(cue.words)]
        position += len(cue.words)
        assert {e.label for e in chunk} == {cue.label}, (cue, chunk)
        if chunk[0].exact:
            assert cue.start == pytest.approx(chunk[0].start, abs=0.001)
        else:
            assert cue.start >= chunk[0].start - 0.001
        if all(e.exact for e in chunk):
            assert cue.end == pytest.approx(max(e.end for e in chunk), abs=0.001)
        else:
            assert cue.end <= chunk[-1].end + 0.001


def test_formats_and_media_types() -> None:
    assert FORMATS == ("json", "txt", "srt", "vtt", "tsv", "rttm")
    assert set(MEDIA_TYPES) == set(FORMATS)
    assert MEDIA_TYPES["srt"] == "application/x-subrip"
    assert MEDIA_TYPES["vtt"] == "text/vtt"


def test_monologue_is_long_enough_to_matter() -> None:
    transcript = monologue()
    assert len(transcript.segments[0].words) >= 60
    assert transcript.segments[0].end - transcript.segments[0].start > 40


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_monologue_captions_follow_the_rules(fmt: str) -> None:
    transcript = monologue()
    text = render(transcript, fmt)
    cues = parse_srt(text) if fmt == "srt" else parse_vtt(text)
    check_cues(cues, expected_words(transcript))
    # Two lines of 42 characters per cue, at most 7 s each.
    assert len(cues) >= max(len(MONOLOGUE) / 84, transcript.segments[0].end / 7)
    assert all(cue.label is None for cue in cues)
    assert any(f"{LONG_WORD}," in cue.lines for cue in cues)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_conversation_captions_follow_the_rules(fmt: str) -> None:
    transcript = conversation()
    text = render(transcript, fmt)
    cues = parse_srt(text) if fmt == "srt" else parse_vtt(text)
    check_cues(cues, expected_words(transcript))
    labels = [cue.label for cue in cues]
    assert set(labels) == {"Alice", "SPEAKER_01", "SPEAKER_02"}
    # The interjection inside SPEAKER_01's segment gets its own cue, named for Alice.
    interjection = next(cue for cue in cues if cue.words == ["really", "twice?"])
    assert interjection.label == "Alice"


def test_vtt_escapes_markup_and_uses_voice_tags() -> None:
    text = render(conversation(), "vtt")
    assert "<draft>" not in text
    assert "&lt;draft&gt;" in text
    assert "fine &amp; final" in text
    assert "<v Alice>" in text
    assert "<v SPEAKER_01>" in text
    transcript = monologue()
    mono = render(transcript, "vtt")
    assert "x &lt; y &amp; y &lt; z" in mono.replace("\n", " ")
    assert "<v " not in mono


def test_srt_labels_every_cue_with_the_speaker_name() -> None:
    cues = parse_srt(render(conversation(), "srt"))
    assert all(cue.lines[0].startswith(f"[{cue.label}] ") for cue in cues)


def test_two_line_cues_are_balanced() -> None:
    text = "we went out to see the old town and then we came back home again for tea"
    transcript = make_transcript([make_segment(0, text, 0.0)])
    assert transcript.segments[0].end < 7
    cues = build_cues(transcript)
    assert len(cues) == 1
    first, second = cues[0].lines
    # Greedy filling would give a 42-character line over a short one.
    assert abs(len(first) - len(second)) <= 8
    assert f"{first} {second}" == text


def test_text_that_fits_stays_on_one_line() -> None:
    transcript = make_transcript([make_segment(0, "Short and sweet.", 1.0)])
    (cue,) = build_cues(transcript)
    assert cue.lines == ("Short and sweet.",)


def test_long_word_gets_a_line_of_its_own() -> None:
    word = "x" * 60
    transcript = make_transcript([make_segment(0, f"the {word} is here", 0.0)])
    cues = build_cues(transcript)
    lines = [line for cue in cues for line in cue.lines]
    assert word in lines
    assert all(len(line) <= 42 for line in lines if line != word)


def test_slow_speech_is_split_by_duration() -> None:
    words = [Word(f" w{i}", i * 1.2, i * 1.2 + 0.5) for i in range(20)]
    segment = Segment(0, 0.0, words[-1].end, " ".join(w.word.strip() for w in words), words=words)
    transcript = make_transcript([segment])
    cues = parse_srt(render(transcript, "srt"))
    check_cues(cues, expected_words(transcript))
    assert len(cues) >= 4


def test_long_silence_ends_a_cue() -> None:
    words = [Word(" before", 0.0, 0.4), Word(" the", 0.5, 0.7), Word(" pause", 3.0, 3.4)]
    segment = Segment(0, 0.0, 3.4, "before the pause", words=words)
    cues = build_cues(make_transcript([segment]))
    assert [c.lines for c in cues] == [("before the",), ("pause",)]
    assert cues[0].end == pytest.approx(0.7)


def test_segment_without_words_shares_its_span_by_characters() -> None:
    pieces = [f"{'abcdefgh'[: 1 + i % 8]}{i}" for i in range(30)]
    segment = Segment(0, 10.0, 16.0, " ".join(pieces))
    transcript = make_transcript([segment])
    cues = parse_vtt(render(transcript, "vtt"))
    check_cues(cues, expected_words(transcript))
    assert len(cues) >= 2
    assert cues[0].start == pytest.approx(10.0, abs=0.001)
    assert cues[-1].end == pytest.approx(16.0, abs=0.001)
    total = sum(len(p) for p in pieces)
    done = 0
    for cue, following in itertools.pairwise(cues):
        done += sum(len(w) for w in cue.words)
        boundary = 10.0 + 6.0 * done / total
        assert cue.end == pytest.approx(boundary, abs=0.001)
        assert following.start == pytest.approx(boundary, abs=0.001)


def test_degenerate_word_times_still_give_valid_cues() -> None:
    words_a = [
        Word(" zero", 1.0, 1.0),
        Word(" backwards", 1.5, 1.2),
        Word(" fine.", 1.6, 2.0),
    ]
    words_b = [
        Word(" early", 1.8, 2.2),  # starts before the previous segment ends
        Word(" same", 2.2, 2.2),
        Word(" nan", math.nan, math.nan),
        Word(" last", 2.2, 2.3),
    ]
    seg_a = Segment(0, 1.0, 2.0, "zero backwards fine.", "SPEAKER_00", words=words_a)
    seg_b = Segment(1, 1.8, 2.3, "early same nan last", "SPEAKER_01", words=words_b)
    seg_c = Segment(2, 2.3, 2.3, "instant", "SPEAKER_00")
    seg_d = Segment(3, -1.0, -0.5, "negative", "SPEAKER_01")
    transcript = make_transcript([seg_a, seg_b, seg_c, seg_d])
    for fmt, parse in (("srt", parse_srt), ("vtt", parse_vtt)):
        cues = parse(render(transcript, fmt))
        assert [w for c in cues for w in c.words] == [e.text for e in expected_words(transcript)]
        for cue in cues:
            assert cue.end > cue.start
        for before, after in itertools.pairwise(cues):
            assert after.start > before.start
            assert after.start >= before.end


def random_transcript(rng: random.Random) -> Transcript:
    """Messy engine output: odd timings, empty words, long words, mixed speakers."""
    choices = ["a", "bb", "hello,", "world.", "&", "<b>", "  ", "", "x" * 50]
    segments = []
    t = rng.uniform(0, 3)
    for seg_id in range(rng.randint(0, 5)):
        words = []
        for _ in range(rng.randint(0, 30)):
            start = t + rng.uniform(-0.5, 1.0)
            end = start + rng.choice([0.0, -0.2, 0.3, rng.uniform(0, 9)])
            speaker = rng.choice([None, "S0", "S1"])
            words.append(Word(" " + rng.choice(choices), start, end, None, speaker))
            t = max(t, start) + rng.uniform(0, 2)
        text = " ".join(w.word.strip() for w in words if w.word.strip())
        if not words:
            text = rng.choice(["", "some text without timings", "y " * 40])
        speaker = rng.choice([None, "S0", "S1"])
        segments.append(Segment(seg_id, t - 2, t + rng.uniform(-1, 5), text, speaker, words=words))
    return make_transcript(segments, [Speaker("S0", "Zoë & <Co>")])


def test_messy_input_always_gives_valid_captions() -> None:
    rng = random.Random(20240607)
    for _ in range(200):
        transcript = random_transcript(rng)
        options = CaptionOptions(
            max_line_chars=rng.choice([10, 42]),
            max_lines=rng.choice([1, 2, 3]),
            max_duration=rng.choice([0.5, 2.0, 7.0]),
            min_gap=rng.choice([0.0, 0.1]),
        )
        expected = [e.text for e in expected_words(transcript)]
        for fmt, parse in (("srt", parse_srt), ("vtt", parse_vtt)):
            cues = parse(render(transcript, fmt, options))
            assert [w for c in cues for w in c.words] == expected
            for cue in cues:
                assert len(cue.lines) <= options.max_lines
                assert 0 < cue.end - cue.start <= options.max_duration + 0.0005
            for before, after in itertools.pairwise(cues):
                assert after.start > before.start
                assert after.start >= before.end + options.min_gap - 0.0005


def test_min_gap_separates_cues() -> None:
    options = CaptionOptions(min_gap=0.2)
    segments = [
        make_segment(i, f"turn number {i} is here.", i * 1.5, f"SPEAKER_0{i % 2}") for i in range(6)
    ]
    transcript = make_transcript(segments)
    cues = parse_srt(render(transcript, "srt", options))
    assert len(cues) == 6
    for before, after in itertools.pairwise(cues):
        assert after.start - before.end >= 0.2 - 0.0005


def test_custom_caption_options() -> None:
    options = CaptionOptions(max_line_chars=20, max_lines=1, max_duration=3.0)
    transcript = conversation()
    for fmt, parse in (("srt", parse_srt), ("vtt", parse_vtt)):
        cues = parse(render(transcript, fmt, options))
        words = [w for c in cues for w in c.words]
        assert words == [e.text for e in expected_words(transcript)]
        for cue in cues:
            assert len(cue.lines) == 1
            assert cue.end - cue.start <= 3.0005
            if fmt == "vtt" and len(cue.words) > 1:
                assert len(cue.lines[0]) <= 20 - len(f"[{cue.label}] ")


def test_timestamps_beyond_99_hours() -> None:
    start = 100 * 3600 + 1.5
    transcript = make_transcript([make_segment(0, "much later now", start)])
    srt_text = render(transcript, "srt")
    assert "100:00:01,500 --> " in srt_text
    (sub,) = srt.parse(srt_text)
    assert sub.start == timedelta(hours=100, seconds=1.5)
    vtt_text = render(transcript, "vtt")
    assert "100:00:01.500 --> " in vtt_text
    (caption,) = webvtt.from_string(vtt_text).captions
    assert caption.start_time.in_milliseconds() == round(start * 1000)


def test_build_cues_uses_display_names() -> None:
    cues = build_cues(conversation())
    assert all(isinstance(c, Cue) for c in cues)
    assert {c.speaker for c in cues} == {"Alice", "SPEAKER_01", "SPEAKER_02"}
    assert all(c.lines and all(c.lines) for c in cues)


def test_txt_plain_transcript_has_one_line_per_segment() -> None:
    seg0 = make_segment(0, "First line here.", 0.0)
    seg1 = Segment(1, 2.0, 3.0, "  second\tline\nwrapped  ")
    seg2 = Segment(2, 3.0, 3.5, "")
    text = render(make_transcript([seg0, seg1, seg2]), "txt")
    assert text.splitlines() == ["First line here.", "second line wrapped"]
    assert text.endswith("\n")


def test_txt_diarized_transcript_reads_like_a_script() -> None:
    transcript = conversation()
    text = render(transcript, "txt")
    paragraphs = text.strip().split("\n\n")
    names = [p.split(": ", 1)[0] for p in paragraphs]
    assert names == ["Alice", "SPEAKER_01", "Alice", "SPEAKER_01", "SPEAKER_02"]
    # Consecutive segments of one speaker merge; the blank segment leaves no trace.
    assert paragraphs[2] == "Alice: " + transcript.segments[2].text
    assert paragraphs[3] == "SPEAKER_01: " + transcript.segments[4].text
    for seg in transcript.segments:
        assert seg.text.strip() in text


def test_tsv_rows_in_milliseconds() -> None:
    transcript = conversation()
    transcript.segments.append(
        Segment(6, 40.123, 41.9996, 'tab\there and "quoted"\nnewline', "SPEAKER_01")
    )
    rows = list(csv.reader(io.StringIO(render(transcript, "tsv")), delimiter="\t"))
    assert rows[0] == ["start", "end", "speaker", "text"]
    kept = [s for s in transcript.segments if s.text.strip()]
    assert len(rows) == len(kept) + 1
    for row, seg in zip(rows[1:], kept, strict=True):
        assert row[0] == str(round(seg.start * 1000))
        assert row[1] == str(round(seg.end * 1000))
        assert row[2] == transcript.speaker_label(seg.speaker)
        assert "\t" not in row[3] and "\n" not in row[3]
    assert rows[-1] == ["40123", "42000", "SPEAKER_01", 'tab here and "quoted" newline']
    assert rows[1][2] == "Alice"


def test_tsv_without_speakers_leaves_the_column_empty() -> None:
    rows = list(csv.reader(io.StringIO(render(monologue(), "tsv")), delimiter="\t"))
    assert rows[1][2] == ""
    assert rows[1][0] == "500"


@pytest.mark.parametrize("transcript", [monologue(), conversation()])
def test_json_round_trips(transcript: Transcript) -> None:
    text = render(transcript, "json")
    data = json.loads(text)
    assert Transcript.from_dict(data) == transcript
    assert "\n  " in text
    if transcript.speakers:
        assert "東京" in text


def test_empty_transcript() -> None:
    empty = make_transcript([])
    assert Transcript.from_dict(json.loads(render(empty, "json"))) == empty
    assert render(empty, "txt") == ""
    assert render(empty, "srt") == ""
    assert list(srt.parse(render(empty, "srt"))) == []
    vtt = render(empty, "vtt")
    assert vtt.strip() == "WEBVTT"
    assert webvtt.from_string(vtt).captions == []
    assert render(empty, "tsv") == "start\tend\tspeaker\ttext\n"
    assert build_cues(empty) == []


def test_format_names_are_case_insensitive() -> None:
    transcript = monologue()
    assert render(transcript, " SRT ") == render(transcript, "srt")


def test_unknown_format_is_an_option_error() -> None:
    with pytest.raises(OptionError) as info:
        render(monologue(), "docx")
    assert info.value.details["field"] == "format"
    assert info.value.code == "INVALID_OPTION"


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_line_chars", 0), ("max_lines", 0), ("max_duration", 0.0), ("min_gap", -1.0)],
)
def test_invalid_caption_options(field: str, value: float) -> None:
    with pytest.raises(OptionError) as info:
        CaptionOptions(**{field: value})  # type: ignore[arg-type]
    assert info.value.details["field"] == field


def test_write_replaces_the_file_atomically(tmp_path: Path) -> None:
    transcript = conversation()
    target = tmp_path / "out" / "result.srt"
    assert write(transcript, "srt", target) == target
    assert target.read_text(encoding="utf-8") == render(transcript, "srt")
    write(monologue(), "srt", target)
    assert target.read_text(encoding="utf-8") == render(monologue(), "srt")
    assert [p.name for p in target.parent.iterdir()] == ["result.srt"]
    with pytest.raises(OptionError):
        write(transcript, "nope", tmp_path / "out" / "result.nope")
    assert [p.name for p in target.parent.iterdir()] == ["result.srt"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_reads_the_captions(tmp_path: Path) -> None:
    transcript = conversation()
    srt_path = write(transcript, "srt", tmp_path / "out.srt")
    vtt_path = write(transcript, "vtt", tmp_path / "out.vtt")
    count = len(build_cues(transcript))
    ass_path = tmp_path / "out.ass"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(srt_path), str(ass_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    dialogue = [
        line
        for line in ass_path.read_text(encoding="utf-8").splitlines()
        if line.startswith("Dialogue:")
    ]
    assert len(dialogue) == count
    converted = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(vtt_path), "-f", "srt", "-"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subs = list(srt.parse(converted.stdout.decode("utf-8")))
    assert len(subs) == count
    assert "Thanks for joining." in subs[0].content
    assert any("fine & final" in sub.content for sub in subs)


def test_rttm_lists_diarized_turns(tmp_path: Path) -> None:
    transcript = Transcript(
        text="Hi there. Hello.", language="en", language_probability=None, duration=5.0,
        model="m",
        segments=[
            Segment(id=0, start=0.5, end=1.75, text="Hi there.", speaker="SPEAKER_00"),
            Segment(id=1, start=2.0, end=3.0, text="Hello.", speaker="SPEAKER_01"),
        ],
        speakers=[Speaker(id="SPEAKER_00", name="Ada Lovelace"), Speaker(id="SPEAKER_01")],
    )
    path = write(transcript, "rttm", tmp_path / "my talk.rttm")
    rows = [line.split() for line in path.read_text().splitlines()]
    assert [len(r) for r in rows] == [10, 10]
    assert {r[1] for r in rows} == {"my_talk"}
    assert [(float(r[3]), float(r[4]), r[7]) for r in rows] == [
        (0.5, 1.25, "Ada_Lovelace"), (2.0, 1.0, "SPEAKER_01")]
    undiarized = Transcript(text="x", language="en", language_probability=None, duration=1.0,
                            model="m", segments=[Segment(id=0, start=0, end=1, text="x")])
    assert render(undiarized, "rttm") == ""
