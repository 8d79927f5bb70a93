"""Word error rate and speed of a model over a JSONL manifest of reference transcripts.

A manifest line holds at least `id`, `audio` (relative to the manifest's folder or
its parent, as in the shared corpus) and `text`; `language` is optional (English
when absent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hark.config import Settings
from hark.errors import HarkError
from hark.evaluation.manifest import find_file, read_rows
from hark.evaluation.scoring import ErrorCounts, count_errors, total, uses_characters
from hark.pipeline.engines.select import borrow_engine, resolve_model
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.run import transcribe_file


@dataclass(frozen=True)
class ManifestItem:
    id: str
    audio: Path
    text: str
    language: str


@dataclass
class ItemResult:
    item: ManifestItem
    hypothesis: str = ""
    language: str | None = None  # what the transcript says was spoken
    duration: float = 0.0
    seconds: float = 0.0
    errors: ErrorCounts | None = None
    error: str | None = None

    @property
    def speed(self) -> float:
        return self.duration / self.seconds if self.seconds else 0.0

    @property
    def metric(self) -> str:
        return "CER" if uses_characters(self.item.language) else "WER"


@dataclass
class EvalReport:
    model: str
    items: list[ItemResult] = field(default_factory=list)

    def scored(self, language: str | None = None) -> list[ItemResult]:
        return [r for r in self.items if r.errors is not None
                and (language is None or r.item.language == language)]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per language: pooled error rate, audio seconds, processing seconds, × real time."""
        out: dict[str, dict[str, float]] = {}
        for language in sorted({r.item.language for r in self.scored()}):
            results = self.scored(language)
            counts = total([r.errors for r in results if r.errors is not None])
            audio = sum(r.duration for r in results)
            spent = sum(r.seconds for r in results)
            out[language] = {
                "items": len(results), "error_rate": counts.rate,
                "errors": counts.errors, "reference_length": counts.reference_length,
                "audio_seconds": audio, "processing_seconds": spent,
                "real_time_factor": audio / spent if spent else 0.0,
            }
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "summary": self.summary(),
            "items": [
                {"id": r.item.id, "language": r.item.language, "metric": r.metric,
                 "error_rate": r.errors.rate if r.errors else None,
                 "errors": r.errors.errors if r.errors else None,
                 "reference_length": r.errors.reference_length if r.errors else None,
                 "duration": r.duration, "seconds": r.seconds, "speed": r.speed,
                 "reference": r.item.text, "hypothesis": r.hypothesis, "error": r.error}
                for r in self.items
            ],
        }


def read_manifest(path: Path, languages: set[str] | None = None) -> list[ManifestItem]:
    items = read_rows(path, lambda row: ManifestItem(
        id=str(row["id"]), audio=find_file(path, str(row["audio"])),
        text=str(row["text"]), language=str(row.get("language") or "en"),
    ))
    return [i for i in items if languages is None or i.language in languages]


def evaluate_asr(
    items: list[ManifestItem], options: TranscribeOptions, settings: Settings,
    on_result: Callable[[ItemResult], None] | None = None, *, detect_language: bool = False,
) -> EvalReport:
    """Transcribe every item and score it; speed excludes the one-off model loads.

    Each item's language is given to the model unless `detect_language`. `auto` is
    resolved per item, for the language given, as a job would resolve it.
    """
    def language(item: ManifestItem) -> str | None:
        return options.language or (None if detect_language else item.language)

    models = {item.id: resolve_model(options.model, settings, language(item))
              for item in items}
    names = []
    for model in dict.fromkeys(models.values()):
        with borrow_engine(model, settings) as engine:
            names.append(engine.name)
    report = EvalReport(model=", ".join(names) or resolve_model(options.model, settings))
    for item in items:
        result = _evaluate_item(item, replace(options, model=models[item.id],
                                              language=language(item)), settings)
        report.items.append(result)
        if on_result is not None:
            on_result(result)
    return report


def _evaluate_item(item: ManifestItem, options: TranscribeOptions,
                   settings: Settings) -> ItemResult:
    result = ItemResult(item)
    try:
        started = time.perf_counter()
        transcript = transcribe_file(item.audio, options, settings)
        result.seconds = time.perf_counter() - started
    except HarkError as exc:
        result.error = f"{exc.code}: {exc.message}"
        return result
    result.duration = transcript.duration
    result.language = transcript.language
    result.hypothesis = transcript.text
    result.errors = count_errors(item.text, transcript.text, item.language)
    return result
