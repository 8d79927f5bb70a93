import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from hark.config import Settings
from hark.errors import CanceledError, UnknownModelError
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import Hooks, transcribe_file
from hark.pipeline.transcript import Segment


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (samples * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_auto_picks_pocketsphinx_without_whisper_models(settings: Settings) -> None:
    assert resolve_model(None, settings) == "pocketsphinx"
    assert resolve_model("small", settings) == "small"


def test_auto_picks_the_best_installed_whisper_model(
    settings: Settings, tiny_whisper_dir: Path
) -> None:
    models = settings.models_path
    shutil.copytree(tiny_whisper_dir, models / "tiny")
    assert resolve_model(None, settings) == "tiny"
    shutil.copytree(tiny_whisper_dir, models / "base")
    assert resolve_model("auto", settings) == "base"


def test_silent_file_is_an_empty_transcript(settings: Settings, tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 4, dtype=np.float32))
    stages: list[str] = []
    transcript = transcribe_file(path, TranscribeOptions(), settings,
                                 Hooks(on_progress=lambda stage, _: stages.append(stage)))
    assert transcript.text == "" and transcript.segments == []
    assert transcript.duration == pytest.approx(4.0, abs=0.01)
    assert transcript.model == "pocketsphinx/en-us"
    assert stages[-1] == "done"
    assert set(transcript.timings) == {"decode", "vad", "transcribe"}


def test_unknown_model_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = write_wav(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32))
    with pytest.raises(UnknownModelError) as info:
        transcribe_file(path, TranscribeOptions(model="whisper-9000"), settings)
    assert info.value.details["field"] == "model"


@pytest.mark.corpus
def test_progress_segments_and_cancel(settings: Settings, corpus_dir: Path) -> None:
    audio = corpus_dir / "asr" / "osr_us_000_0034_8k.wav"
    progress: list[tuple[str, float]] = []
    seen: list[Segment] = []
    transcript = transcribe_file(
        audio, TranscribeOptions(), settings,
        Hooks(on_progress=lambda s, f: progress.append((s, f)), on_segment=seen.append),
    )
    assert [s.id for s in transcript.segments] == list(range(len(transcript.segments)))
    assert seen == transcript.segments and len(seen) >= 3
    fractions = [f for _, f in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = list(dict.fromkeys(s for s, _ in progress))
    assert stages == ["loading", "decoding", "detecting speech", "transcribing", "done"]
    assert transcript.text.startswith(transcript.segments[0].text)

    segments_before_cancel: list[Segment] = []

    def canceled() -> bool:
        return len(segments_before_cancel) >= 1

    with pytest.raises(CanceledError):
        transcribe_file(audio, TranscribeOptions(), settings,
                        Hooks(on_segment=segments_before_cancel.append, is_canceled=canceled))
    assert len(segments_before_cancel) == 1


def test_decoding_reports_progress_and_a_cancel_leaves_nothing_behind(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = write_wav(tmp_path / "tone.wav", 0.1 * np.sin(np.arange(16000 * 20) / 5.0))
    seen: list[tuple[str, float]] = []

    def cancel_mid_decode() -> bool:
        return any(stage == "decoding" and value > 0.03 for stage, value in seen)

    with borrow_engine(resolve_model(None, settings), settings):
        pass  # the engine's own processes and pipes are there before counting
    fds = len(os.listdir("/proc/self/fd"))
    with pytest.raises(CanceledError):
        transcribe_file(path, TranscribeOptions(), settings,
                        Hooks(on_progress=lambda s, v: seen.append((s, v)),
                              is_canceled=cancel_mid_decode))
    decoding = [v for s, v in seen if s == "decoding"]
    assert len(decoding) >= 3 and decoding == sorted(decoding) and decoding[-1] < 0.06
    assert "detecting speech" not in {s for s, _ in seen}
    assert len(os.listdir("/proc/self/fd")) == fds
    assert list(scratch.iterdir()) == []
