"""`GET /v1/models`: what the `model` field takes here, as OpenAI's model objects.

OpenAI's speech-to-text names (all run on the configured default model), pocketsphinx,
and every Whisper model installed (model packages and the model directory; when
downloads are allowed, every size Hark can fetch).
"""

from __future__ import annotations

from typing import Any

from hark.config import Settings
from hark.errors import HarkError
from hark.openai_api.errors import ModelNotFoundError
from hark.openai_api.schemas import OPENAI_MODELS, AudioRequest, map_model, resolve
from hark.pipeline import model_store
from hark.pipeline.engines.select import POCKETSPHINX

OWNER = "hark"


def model_object(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}


def list_models(settings: Settings, started_at: float) -> dict[str, Any]:
    created = int(started_at)
    models = {name: created for name in (*OPENAI_MODELS, POCKETSPHINX)}
    for installed in model_store.installed_models(settings.models_path,
                                                  packages=settings.model_packages):
        # A split model package is assembled on first use; until then it has no folder.
        when = int(installed.path.stat().st_mtime) if installed.path.exists() else created
        models.setdefault(installed.name, when)
    if settings.allow_downloads:
        for name in model_store.WHISPER_REPOS:
            models.setdefault(name, created)
    return {"object": "list", "data": [model_object(name, when) for name, when in models.items()]}


def get_model(model_id: str, settings: Settings, started_at: float) -> dict[str, Any]:
    """The model object of any name a transcription would accept; 404 otherwise."""
    for entry in list_models(settings, started_at)["data"]:
        if entry["id"] == model_id:
            return dict(entry)
    hark_model, diarize = map_model(model_id)
    request = AudioRequest(task="transcribe", model=model_id, hark_model=hark_model,
                           diarize=diarize)
    try:
        resolve(request, request.job_options(), settings)
    except ModelNotFoundError:
        raise
    except HarkError as exc:
        raise ModelNotFoundError(f"The model `{model_id}` does not exist",
                                 field="model") from exc
    return model_object(model_id, int(started_at))
