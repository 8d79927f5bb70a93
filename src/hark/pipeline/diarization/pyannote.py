"""Diarization with a pyannote.audio pipeline loaded from a local folder.

pyannote.audio is optional (`pip install 'hark[pyannote]'`). The pipeline is only
ever read from disk: `model_path` is its `config.yaml` or the folder holding it, and
any models that file names must be local paths too. Loading runs with the Hugging
Face hub switched to offline mode, so a config that still names hub models fails
rather than downloading them.

pyannote finds speech itself, with its own segmentation model, so the VAD regions
serve only to skip recordings without any speech. Where the installed version
offers it, the overlap-free ("exclusive") diarization is used, since each word gets
exactly one speaker.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hark.errors import MissingDependencyError, OptionError
from hark.pipeline.audio import SAMPLE_RATE
from hark.pipeline.diarization.base import Diarization, DiarizationOptions, SpeakerTurn
from hark.pipeline.vad import Chunk


def resolve_config(model_path: str | Path | None) -> Path:
    """The pipeline's config.yaml, or an OptionError saying what is wrong."""
    if model_path is None:
        raise OptionError(
            "the pyannote diarizer needs a local pipeline: set HARK_PYANNOTE_MODEL to the "
            "folder (or config.yaml) of a downloaded pyannote speaker-diarization pipeline",
            field="pyannote_model")
    path = Path(model_path).expanduser()
    config = path / "config.yaml" if path.is_dir() else path
    if not config.is_file():
        raise OptionError(f"pyannote pipeline not found: {config} does not exist",
                          field="pyannote_model")
    return config


class PyannoteDiarizer:
    """A pyannote.audio speaker-diarization pipeline, run on the CPU unless told otherwise."""

    def __init__(self, model_path: str | Path | None, device: str = "cpu") -> None:
        config = resolve_config(model_path)
        try:
            import torch
            from pyannote.audio import Pipeline
        except ImportError as exc:
            raise MissingDependencyError("pyannote.audio", extra="pyannote") from exc
        with _hub_offline():
            pipeline = Pipeline.from_pretrained(config)
        if pipeline is None:
            raise OptionError(f"{config} is not a pyannote pipeline", field="pyannote_model")
        self._torch = torch
        self._pipeline: Any = pipeline.to(torch.device(device))
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "pyannote"

    def diarize(
        self, audio: np.ndarray, speech: Sequence[Chunk], options: DiarizationOptions
    ) -> Diarization:
        if not speech or audio.size == 0:
            return Diarization()
        hints = {key: value for key, value in (("num_speakers", options.num_speakers),
                                               ("min_speakers", options.min_speakers),
                                               ("max_speakers", options.max_speakers))
                 if value is not None}
        with self._lock:
            output = self._pipeline(self._input(audio), return_embeddings=True, **hints)
        annotation, vectors = _unpack(output)
        labels = list(annotation.labels())
        turns = sorted(((float(segment.start), float(segment.end), str(label))
                        for segment, _, label in annotation.itertracks(yield_label=True)),
                       key=lambda t: (t[0], t[1]))
        names: dict[str, str] = {}
        for _, _, label in turns:
            names.setdefault(label, f"SPEAKER_{len(names):02d}")
        embeddings: dict[str, np.ndarray] = {}
        if vectors is not None:
            for index, label in enumerate(labels):
                vector = np.asarray(vectors[index], dtype=np.float32)
                if label in names and index < len(vectors) and np.all(np.isfinite(vector)):
                    embeddings[names[label]] = _unit(vector)
        return Diarization(
            turns=[SpeakerTurn(round(s, 3), round(e, 3), names[label]) for s, e, label in turns
                   if e > s],
            embeddings=embeddings)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        model = getattr(self._pipeline, "_embedding", None) or getattr(
            self._pipeline, "embedding", None)
        if not callable(model):
            raise OptionError("this pyannote pipeline has no speaker embedding model",
                              field="pyannote_model")
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        with self._lock:
            vector = np.asarray(model(waveform[None, None]), dtype=np.float32).reshape(-1)
        return _unit(vector)

    def close(self) -> None:
        self._pipeline = None

    def _input(self, audio: np.ndarray) -> dict[str, Any]:
        waveform = self._torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        return {"waveform": waveform[None, :], "sample_rate": SAMPLE_RATE}


def _unpack(output: Any) -> tuple[Any, np.ndarray | None]:
    """The diarization and per-speaker vectors, across pyannote.audio's result shapes."""
    if isinstance(output, tuple):
        annotation, vectors = output
        return annotation, np.asarray(vectors)
    annotation = (getattr(output, "exclusive_speaker_diarization", None)
                  or getattr(output, "speaker_diarization", None) or output)
    vectors = getattr(output, "speaker_embeddings", None)
    return annotation, None if vectors is None else np.asarray(vectors)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Hub downloads refused, whether huggingface_hub was imported already or not."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    # huggingface_hub reads the variable once, at import; its checks consult this flag.
    constants: Any
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    flag: Any = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = flag
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
