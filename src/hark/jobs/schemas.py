"""What the job API accepts and returns.

`JobOptions` is validated once, at submission, by building the pipeline's own
option objects from it: the same checks the CLI gets, each failure naming its field.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hark.config import Settings
from hark.errors import ModelNotInstalledError, OptionError, UnknownModelError
from hark.pipeline.diarization.base import DiarizationOptions
from hark.pipeline.engines.select import (
    POCKETSPHINX,
    check_model_name,
    model_available,
    model_key,
    resolve_model,
)
from hark.pipeline.languages import language_code
from hark.pipeline.model_store import WHISPER_REPOS, installed_models
from hark.pipeline.options import TranscribeOptions
from hark.pipeline.vad import VadOptions

if TYPE_CHECKING:
    from hark.jobs.models import Job

API_PREFIX = "/api/v1/jobs"
MAX_PROMPT_CHARS = 2000
MAX_URL_CHARS = 2048
MAX_KNOWN_SPEAKERS = 8


class UnknownModelOptionError(OptionError):
    """An unknown model named in a job's options: a bad field, not a missing resource."""

    code = "UNKNOWN_MODEL"


def check_model_is_a_name(model: str, settings: Settings) -> None:
    """Over HTTP a model is named, never a path: a caller must not load (or learn of)
    folders on the server. Known sizes, pocketsphinx, and models installed in the model
    directory or from packages are accepted; paths stay a command-line feature."""
    key = model_key(model)
    installed = {m.name for m in installed_models(settings.models_path,
                                                  packages=settings.model_packages)}
    if key == POCKETSPHINX or key in WHISPER_REPOS or key in installed:
        return
    known = ", ".join(sorted({POCKETSPHINX, *WHISPER_REPOS, *installed}))
    raise UnknownModelOptionError(
        f"Unknown model {model!r}: give the name of a model (paths to model folders work "
        f"only on the command line). Known models: {known}", field="model")


class KnownSpeaker(BaseModel):
    """A voice given with the request itself (the OpenAI API's known speakers): used
    instead of the tenant's enrolled profiles, for this job only."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    embedding: list[float] = Field(min_length=1, max_length=4096)


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=32)
    task: Literal["transcribe", "translate"] = "transcribe"
    diarize: bool = False
    num_speakers: int | None = Field(default=None, ge=1, le=32)
    min_speakers: int | None = Field(default=None, ge=1, le=32)
    max_speakers: int | None = Field(default=None, ge=1, le=32)
    identify_speakers: bool = False
    word_timestamps: bool = True
    vad: bool = True
    # Silero settings; None keeps the pipeline's defaults.
    vad_threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    vad_min_silence_ms: int | None = Field(default=None, ge=0, le=10_000)
    vad_speech_pad_ms: int | None = Field(default=None, ge=0, le=2_000)
    beam_size: int = Field(default=5, ge=1, le=20)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    initial_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    hotwords: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    priority: int = Field(default=0, ge=-100, le=100)
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    # Stored with the job (the worker reads them there); JobOut shows names only.
    known_speakers: list[KnownSpeaker] | None = Field(default=None,
                                                      max_length=MAX_KNOWN_SPEAKERS)

    def pipeline_options(self, model: str | None = None) -> TranscribeOptions:
        """The pipeline's options; raises OptionError (with the field) when invalid."""
        return TranscribeOptions(
            model=model if model is not None else self.model,
            language=self.language or None,
            task=self.task,
            word_timestamps=self.word_timestamps,
            vad=self._vad_options() if self.vad else None,
            beam_size=self.beam_size,
            temperature=self.temperature,
            initial_prompt=self.initial_prompt or None,
            hotwords=self.hotwords or None,
            diarize=self.diarize,
            speakers=DiarizationOptions(self.num_speakers, self.min_speakers,
                                        self.max_speakers),
            identify_speakers=self.identify_speakers,
        )

    def _vad_options(self) -> VadOptions:
        default = VadOptions()
        return VadOptions(
            threshold=default.threshold if self.vad_threshold is None else self.vad_threshold,
            min_silence_ms=default.min_silence_ms if self.vad_min_silence_ms is None
            else self.vad_min_silence_ms,
            speech_pad_ms=default.speech_pad_ms if self.vad_speech_pad_ms is None
            else self.vad_speech_pad_ms)

    def resolve(self, settings: Settings) -> tuple[TranscribeOptions, str]:
        """Validated pipeline options and the concrete model the job will run on."""
        language = language_code(self.language) if self.language else None
        model = resolve_model(self.model, settings, language)
        check_model_is_a_name(model, settings)
        try:
            check_model_name(model, settings)
        except UnknownModelError as exc:
            raise UnknownModelOptionError(exc.message, field="model") from exc
        if not settings.allow_downloads and not model_available(model, settings):
            raise ModelNotInstalledError(
                f"model {model!r} is not installed; install it with `hark models pull "
                f"{model_key(model)}` on the server (jobs never download models unless "
                "HARK_ALLOW_DOWNLOADS is set)", field="model", model=model)
        return self.pipeline_options(model), model

    def stored(self) -> dict[str, Any]:
        """The options as recorded on the job: only what the caller set."""
        return self.model_dump(exclude_unset=True, exclude={"webhook_url"})


class UrlSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=MAX_URL_CHARS)


class UploadSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upload_id: str = Field(max_length=64)


class CreateJob(JobOptions):
    source: UrlSource | UploadSource


class CreateUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    size: int = Field(gt=0)


class UploadSlot(BaseModel):
    upload_id: str
    url: str
    method: Literal["PUT"] = "PUT"
    expires_at: datetime


class JobError(BaseModel):
    error: str
    error_code: str
    details: dict[str, Any] = Field(default_factory=dict)


class JobLinks(BaseModel):
    self: str
    result: str
    events: str
    websocket: str


class JobWebhook(BaseModel):
    url: str
    status: str | None
    attempts: int
    error: str | None


class JobOut(BaseModel):
    """A job as every API answer and event shows it (the product's job shape)."""

    id: str
    status: str
    progress: float
    stage: str | None
    filename: str
    duration: float | None
    options: dict[str, Any]
    model: str
    language: str | None
    warnings: list[str]
    queue: str
    priority: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    timings: dict[str, float] | None
    purged: bool
    webhook: JobWebhook | None
    links: JobLinks

    @classmethod
    def of(cls, job: Job) -> JobOut:
        base = f"{API_PREFIX}/{job.id}"
        webhook = None if not job.webhook_url else JobWebhook(
            url=job.webhook_url, status=job.webhook_status,
            attempts=job.webhook_attempts or 0, error=job.webhook_error)
        return cls(
            id=job.id, status=job.status, progress=job.progress, stage=job.stage,
            filename=job.filename, duration=job.duration, options=shown_options(job.options),
            model=job.model, language=job.language, warnings=job.warnings or [],
            queue=job.queue, priority=job.priority, attempts=job.attempts,
            created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at,
            error=JobError.model_validate(job.error) if job.error else None,
            timings=job.timings, purged=bool(job.purged), webhook=webhook,
            links=JobLinks(self=base, result=f"{base}/result", events=f"{base}/events",
                           websocket=f"{base}/ws"))

    def json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def shown_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The job's options without voice embeddings: known speakers show by name only."""
    known = (options or {}).get("known_speakers")
    if not known:
        return dict(options or {})
    return {**(options or {}), "known_speakers": [{"name": s.get("name")} for s in known]}


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None
