"""What the OpenAI audio endpoints accept: multipart fields become an `AudioRequest`, and
OpenAI's model names map onto Hark's.

Field names follow OpenAI's reference. Array fields arrive as `name[]` (the SDKs, curl
users following the reference) or as a plain repeated `name`, or as one JSON array;
`chunking_strategy` as "auto", as a JSON object, or as `chunking_strategy[type]=…`
fields (how the SDK flattens objects in a form). Anything else is refused, as OpenAI
refuses unrecognised arguments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from hark.config import Settings
from hark.errors import HarkError, ModelNotInstalledError, OptionError
from hark.jobs.schemas import MAX_KNOWN_SPEAKERS, MAX_PROMPT_CHARS, JobOptions, KnownSpeaker
from hark.openai_api.errors import ModelNotFoundError
from hark.pipeline.languages import LANGUAGES

Task = Literal["transcribe", "translate"]

TRANSCRIPTION_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
TRANSLATION_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
INCLUDES = ("logprobs",)
# OpenAI's speech-to-text models, listed by GET /v1/models; every one runs on the
# configured default model, and other `gpt-…transcribe…` snapshots are accepted too.
OPENAI_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                 "gpt-4o-transcribe-diarize", "gpt-transcribe")

_TRANSCRIPTION_FIELDS = frozenset({
    "model", "language", "prompt", "response_format", "temperature",
    "timestamp_granularities", "stream", "chunking_strategy", "include",
    "known_speaker_names", "known_speaker_references", "keywords", "languages"})
_TRANSLATION_FIELDS = frozenset({"model", "prompt", "response_format", "temperature"})
_ARRAY_FIELDS = frozenset({"timestamp_granularities", "include", "known_speaker_names",
                           "known_speaker_references", "keywords", "languages"})
_NESTED = re.compile(r"([A-Za-z_]+)\[([A-Za-z_]+)\]")
_VAD_KEYS = {"threshold": "vad_threshold", "silence_duration_ms": "vad_min_silence_ms",
             "prefix_padding_ms": "vad_speech_pad_ms"}
# Hark option names as OpenAI's parameters call them, for error messages.
_PARAMS = {"initial_prompt": "prompt", "hotwords": "keywords", "task": "model",
           "diarize": "model", "identify_speakers": "model",
           "word_timestamps": "timestamp_granularities", "vad": "chunking_strategy",
           "vad_threshold": "chunking_strategy", "vad_min_silence_ms": "chunking_strategy",
           "vad_speech_pad_ms": "chunking_strategy",
           "known_speakers": "known_speaker_references"}
MAX_KEYWORDS_CHARS = MAX_PROMPT_CHARS


class InvalidFieldError(OptionError):
    """A form field the OpenAI API does not accept as sent."""

    code = "INVALID_VALUE"


@dataclass(frozen=True)
class AudioRequest:
    task: Task
    model: str
    """The model as the client named it."""
    hark_model: str | None
    """The Hark model it runs on; None for the configured default."""
    diarize: bool
    response_format: str = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    """None keeps the engine's fallback ladder: what OpenAI does for 0 (or no value)."""
    granularities: frozenset[str] = frozenset({"segment"})
    stream: bool = False
    vad: dict[str, float | int] = field(default_factory=dict)
    logprobs: bool = False
    keywords: tuple[str, ...] = ()
    known_speakers: tuple[tuple[str, str], ...] = ()
    """(name, data URL) pairs from known_speaker_names[] and known_speaker_references[]."""

    @property
    def words(self) -> bool:
        return "word" in self.granularities

    def job_options(self, known: list[KnownSpeaker] | None = None) -> JobOptions:
        # Words are timed whenever something uses them: diarization splits segments at
        # word boundaries, captions break cues at words, logprobs come from words.
        words = self.words or self.diarize or self.logprobs or \
            self.response_format in ("srt", "vtt")
        data: dict[str, Any] = {
            "model": self.hark_model, "task": self.task, "language": self.language,
            "initial_prompt": self.prompt, "temperature": self.temperature,
            "hotwords": " ".join(self.keywords) or None,
            "known_speakers": [k.model_dump() for k in known] if known else None,
            **self.vad}
        if self.diarize:
            # Without known speakers, the tenant's enrolled voices name who they can.
            data.update(diarize=True, identify_speakers=True)
        if not words:
            data["word_timestamps"] = False
        try:
            return JobOptions.model_validate({k: v for k, v in data.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first.get("loc") else "body"
            param = openai_param(name)
            raise InvalidFieldError(f"{param}: {first['msg']}", field=param) from exc


def parse_request(fields: dict[str, list[str]], task: Task) -> AudioRequest:
    """The request in `fields` (every value of each form field, in order)."""
    values, nested = _normalize(fields, task)
    model = _one(values, "model") or ""
    hark_model, diarize = map_model(model)
    diarize = diarize and task == "transcribe"
    formats = TRANSCRIPTION_FORMATS if task == "transcribe" else TRANSLATION_FORMATS
    response_format = _one(values, "response_format") or "json"
    if response_format not in formats:
        raise _invalid("response_format",
                       f"response_format must be one of {', '.join(formats)}, "
                       f"not {response_format!r}")
    if response_format == "diarized_json":
        diarize = True  # Hark can diarize with any model
    granularities = _choices(values, "timestamp_granularities", GRANULARITIES)
    includes = _choices(values, "include", INCLUDES)
    known = _known_speakers(values)
    if known and not diarize:
        raise _invalid("known_speaker_names",
                       "known speakers need diarization: use a model whose name contains "
                       "'diarize' (gpt-4o-transcribe-diarize) or response_format=diarized_json")
    return AudioRequest(
        task=task, model=model, hark_model=hark_model, diarize=diarize,
        response_format=response_format, language=_language(values),
        prompt=_text(values, "prompt", MAX_PROMPT_CHARS),
        temperature=_temperature(values), granularities=frozenset(granularities or ["segment"]),
        stream=_bool(values, "stream"), vad=_chunking(values, nested),
        logprobs="logprobs" in includes, keywords=_keywords(values), known_speakers=known)


# --- models ------------------------------------------------------------------------------

def is_openai_model(name: str) -> bool:
    return name in OPENAI_MODELS or (name.startswith("gpt-") and "transcribe" in name)


def map_model(name: str) -> tuple[str | None, bool]:
    """(the Hark model, None for the default; whether to diarize) for a model name."""
    name = name.strip()
    diarize = "diarize" in name.lower()
    if not name or is_openai_model(name):
        return None, diarize
    base = re.sub(r"[-_]diarize$", "", name, flags=re.IGNORECASE)
    return (None if base.lower() in ("", "diarize") else base), diarize


def resolve(request: AudioRequest, options: JobOptions, settings: Settings) -> str:
    """The concrete Hark model of a request; unknown or uninstalled names are a 404."""
    try:
        _, model = options.resolve(settings)
    except HarkError as exc:
        field_name = exc.details.get("field")
        if field_name == "model" and (exc.code == "UNKNOWN_MODEL" or
                                      isinstance(exc, ModelNotInstalledError)):
            hint = f" ({exc.message})" if isinstance(exc, ModelNotInstalledError) else ""
            raise ModelNotFoundError(
                f"The model `{request.model}` does not exist or is not installed on this "
                f"server{hint}", field="model") from exc
        if isinstance(field_name, str):
            exc.details["field"] = openai_param(field_name)
        raise
    return model


# --- fields ------------------------------------------------------------------------------

def openai_param(name: str) -> str:
    """The OpenAI parameter behind a Hark option name (as errors name fields)."""
    return _PARAMS.get(name, name)


def _invalid(param: str, message: str) -> InvalidFieldError:
    return InvalidFieldError(message, field=param)


def _normalize(fields: dict[str, list[str]],
               task: Task) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    allowed = _TRANSCRIPTION_FIELDS if task == "transcribe" else _TRANSLATION_FIELDS
    values: dict[str, list[str]] = {}
    nested: dict[str, dict[str, str]] = {}
    for raw, given in fields.items():
        name = raw[:-2] if raw.endswith("[]") else raw
        match = _NESTED.fullmatch(name)
        if match is not None and match[1] in allowed:
            nested.setdefault(match[1], {})[match[2]] = given[-1]
            continue
        if name not in allowed:
            raise _invalid(raw, f"Unrecognized request argument supplied: {raw}")
        values.setdefault(name, []).extend(given)
    return values, nested


def _one(values: dict[str, list[str]], name: str) -> str | None:
    given = values.get(name)
    return given[-1].strip() if given else None


def _array(values: dict[str, list[str]], name: str) -> list[str]:
    items: list[str] = []
    for value in values.get(name, []):
        if name in _ARRAY_FIELDS and value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
                items.extend(parsed)
                continue
        items.append(value)
    return items


def _choices(values: dict[str, list[str]], name: str, allowed: tuple[str, ...]) -> list[str]:
    items = [item.strip() for item in _array(values, name)]
    for item in items:
        if item not in allowed:
            raise _invalid(name, f"{name} values must be among {', '.join(allowed)}, "
                                 f"not {item!r}")
    return items


def _text(values: dict[str, list[str]], name: str, limit: int) -> str | None:
    given = values.get(name)
    text = given[-1] if given else None
    if text is not None and len(text) > limit:
        raise _invalid(name, f"{name} must be at most {limit} characters")
    return text or None


def _bool(values: dict[str, list[str]], name: str) -> bool:
    value = _one(values, name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise _invalid(name, f"{name} must be true or false, not {value!r}")


def _number(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _invalid(name, f"{name} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _invalid(name, f"{name} must be a finite number")
    return number


def _temperature(values: dict[str, list[str]]) -> float | None:
    value = _one(values, "temperature")
    if not value:
        return None
    temperature = _number(value, "temperature")
    if not 0.0 <= temperature <= 1.0:
        raise _invalid("temperature", "temperature must be between 0 and 1")
    return temperature or None


def _language(values: dict[str, list[str]]) -> str | None:
    language = (_one(values, "language") or "").lower() or None
    candidates = [c.strip().lower() for c in _array(values, "languages") if c.strip()]
    for code in [language, *candidates]:
        if code is not None and code not in LANGUAGES:
            raise _invalid("language" if code == language else "languages",
                           f"{code!r} is not a supported ISO-639-1 language code")
    # Several possible languages cannot restrict detection; exactly one is a hint.
    if language is None and len(set(candidates)) == 1:
        language = candidates[0]
    return language


def _keywords(values: dict[str, list[str]]) -> tuple[str, ...]:
    keywords = tuple(k.strip() for k in _array(values, "keywords") if k.strip())
    if sum(len(k) + 1 for k in keywords) > MAX_KEYWORDS_CHARS:
        raise _invalid("keywords", f"keywords must be at most {MAX_KEYWORDS_CHARS} "
                                   "characters in all")
    return keywords


def _chunking(values: dict[str, list[str]],
              nested: dict[str, dict[str, str]]) -> dict[str, float | int]:
    """Job VAD settings from chunking_strategy ("auto": Hark's VAD as configured)."""
    value = _one(values, "chunking_strategy")
    settings: dict[str, Any] | None = nested.get("chunking_strategy")
    if settings is None and value:
        if value == "auto":
            return {}
        try:
            settings = json.loads(value)
        except ValueError:
            settings = None
        if not isinstance(settings, dict):
            raise _invalid("chunking_strategy",
                           "chunking_strategy must be 'auto' or a server_vad object")
    if settings is None:
        return {}
    if settings.get("type") != "server_vad":
        raise _invalid("chunking_strategy", "chunking_strategy.type must be 'server_vad'")
    vad: dict[str, float | int] = {}
    for key, raw in settings.items():
        if key == "type":
            continue
        option = _VAD_KEYS.get(key)
        if option is None:
            raise _invalid("chunking_strategy",
                           f"chunking_strategy has no setting {key!r}; known: "
                           f"{', '.join(_VAD_KEYS)}")
        number = _number(str(raw), "chunking_strategy")
        if key == "threshold":
            if not 0.0 < number < 1.0:
                raise _invalid("chunking_strategy",
                               "chunking_strategy.threshold must be between 0 and 1")
            vad[option] = number
        else:
            limit = 10_000 if key == "silence_duration_ms" else 2_000
            if not 0 <= number <= limit:
                raise _invalid("chunking_strategy",
                               f"chunking_strategy.{key} must be between 0 and {limit}")
            vad[option] = int(number)
    return vad


def _known_speakers(values: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    names = [" ".join(n.split()) for n in _array(values, "known_speaker_names")]
    references = [r.strip() for r in _array(values, "known_speaker_references")]
    if len(names) != len(references):
        raise _invalid("known_speaker_references",
                       f"known_speaker_names has {len(names)} entries and "
                       f"known_speaker_references {len(references)}; they must pair up")
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise _invalid("known_speaker_names",
                       f"at most {MAX_KNOWN_SPEAKERS} known speakers are supported")
    for name in names:
        if not name or len(name) > 200:
            raise _invalid("known_speaker_names",
                           "known speaker names must have 1 to 200 characters")
    if len(set(names)) != len(names):
        raise _invalid("known_speaker_names", "known speaker names must be unique")
    return tuple(zip(names, references, strict=True))
