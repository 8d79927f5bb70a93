"""Every error Hark raises on purpose, rooted in one class.

    HarkError                              code              status
    ├── MediaError
    │   ├── MediaNotFoundError             FILE_NOT_FOUND       404
    │   ├── UnsupportedMediaError          UNSUPPORTED_MEDIA    415
    │   ├── NoAudioStreamError             NO_AUDIO_STREAM      422
    │   ├── EmptyMediaError                EMPTY_MEDIA          422
    │   ├── CorruptMediaError              CORRUPT_MEDIA        422
    │   └── AudioTooLongError              AUDIO_TOO_LONG       422
    ├── OptionError                        INVALID_OPTION       422
    │   ├── UnsupportedLanguageError       UNSUPPORTED_LANGUAGE 422
    │   ├── PriorityNotAllowedError        PRIORITY_NOT_ALLOWED 403
    │   └── InsufficientSpeechError        INSUFFICIENT_SPEECH  422
    ├── ModelError
    │   ├── UnknownModelError              UNKNOWN_MODEL        404
    │   ├── ModelNotInstalledError         MODEL_NOT_INSTALLED  409
    │   ├── ModelDownloadError             MODEL_DOWNLOAD_FAILED 502
    │   └── ModelIntegrityError            MODEL_CORRUPT        500
    ├── MissingDependencyError             MISSING_DEPENDENCY   501
    ├── ManifestError                      INVALID_MANIFEST     422
    ├── NotFoundError                      NOT_FOUND            404
    │   ├── SpeakerNotFoundError           SPEAKER_NOT_FOUND    404
    │   ├── JobNotFoundError               JOB_NOT_FOUND        404
    │   └── UploadNotFoundError            UPLOAD_NOT_FOUND     404
    ├── ConflictError                      CONFLICT             409
    │   ├── EmbeddingMismatchError         EMBEDDING_MISMATCH   409
    │   ├── JobStateError                  JOB_NOT_READY        409
    │   ├── JobPurgedError                 JOB_PURGED           410
    │   └── UploadStateError               UPLOAD_NOT_READY     409
    ├── RequestError                       INVALID_REQUEST      422
    │   ├── UploadTooLargeError            PAYLOAD_TOO_LARGE    413
    │   ├── UrlNotAllowedError             URL_NOT_ALLOWED      422
    │   ├── FetchError                     FETCH_FAILED         422
    │   ├── HostNotAllowedError            HOST_NOT_ALLOWED     400
    │   ├── LiveIdleError                  LIVE_IDLE            408
    │   └── FrameTooLargeError             FRAME_TOO_LARGE      413
    ├── AuthenticationError                UNAUTHORIZED         401
    │   └── MediaLinkError                 MEDIA_LINK_INVALID   401
    ├── PermissionDeniedError              FORBIDDEN            403
    │   ├── CrossSiteRequestError          CROSS_SITE_REQUEST   403
    │   ├── RoleNotAllowedError            ROLE_NOT_ALLOWED     403
    │   ├── ScopeNotAllowedError           SCOPE_NOT_ALLOWED    403
    │   └── OperatorOnlyError              OPERATOR_ONLY        403
    ├── QueueFullError                     QUEUE_FULL           429
    ├── RateLimitedError                   RATE_LIMITED         429
    ├── QuotaExceededError                 QUOTA_EXCEEDED       403
    │   └── ConcurrencyQuotaError          QUOTA_EXCEEDED       429
    ├── LiveStreamsFullError               LIVE_STREAMS_FULL    429
    ├── StorageError                       STORAGE_ERROR        503
    ├── DatabaseError                      DATABASE_ERROR       503
    │   └── SchemaMismatchError            SCHEMA_MISMATCH      503
    ├── WorkerLostError                    WORKER_LOST          500
    ├── JobTimeoutError                    JOB_TIMEOUT          500
    └── CanceledError                      CANCELED             409

`code` is stable: clients and the HTTP layer key on it, never on the message.
`details` carries machine-readable context such as the offending field.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HarkError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status_code: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message


class MediaError(HarkError):
    code = "INVALID_MEDIA"
    status_code = 422


class MediaNotFoundError(MediaError):
    """The named file does not exist (a path given on the command line, say)."""

    code = "FILE_NOT_FOUND"
    status_code = 404


class UnsupportedMediaError(MediaError):
    code = "UNSUPPORTED_MEDIA"
    status_code = 415


class NoAudioStreamError(MediaError):
    code = "NO_AUDIO_STREAM"


class EmptyMediaError(MediaError):
    code = "EMPTY_MEDIA"


class CorruptMediaError(MediaError):
    code = "CORRUPT_MEDIA"


class AudioTooLongError(MediaError):
    code = "AUDIO_TOO_LONG"


class OptionError(HarkError):
    code = "INVALID_OPTION"
    status_code = 422


class UnsupportedLanguageError(OptionError):
    code = "UNSUPPORTED_LANGUAGE"


class PriorityNotAllowedError(OptionError):
    """A job priority above what the caller's key allows."""

    code = "PRIORITY_NOT_ALLOWED"
    status_code = 403


class InsufficientSpeechError(OptionError):
    """A voice sample holds too little speech to characterise a voice."""

    code = "INSUFFICIENT_SPEECH"


class ModelError(HarkError):
    code = "MODEL_ERROR"
    status_code = 500


class UnknownModelError(ModelError):
    code = "UNKNOWN_MODEL"
    status_code = 404


class ModelNotInstalledError(ModelError):
    code = "MODEL_NOT_INSTALLED"
    status_code = 409


class ModelDownloadError(ModelError):
    code = "MODEL_DOWNLOAD_FAILED"
    status_code = 502


class ModelIntegrityError(ModelError):
    """A model file does not match the checksum it shipped with."""

    code = "MODEL_CORRUPT"
    status_code = 500


class MissingDependencyError(HarkError):
    """An optional package is not installed; the message says how to install it."""

    code = "MISSING_DEPENDENCY"
    status_code = 501

    def __init__(self, package: str, extra: str | None = None, hint: str | None = None) -> None:
        if hint is None:
            hint = f"pip install 'hark[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is not installed; install it with: {hint}", package=package)


class ManifestError(HarkError):
    code = "INVALID_MANIFEST"
    status_code = 422


class NotFoundError(HarkError):
    code = "NOT_FOUND"
    status_code = 404


class SpeakerNotFoundError(NotFoundError):
    code = "SPEAKER_NOT_FOUND"


class ConflictError(HarkError):
    """The request contradicts what is already stored."""

    code = "CONFLICT"
    status_code = 409


class EmbeddingMismatchError(ConflictError):
    """Voice embeddings from different embedders (or sizes) cannot be mixed in one profile."""

    code = "EMBEDDING_MISMATCH"


class JobNotFoundError(NotFoundError):
    code = "JOB_NOT_FOUND"


class UploadNotFoundError(NotFoundError):
    code = "UPLOAD_NOT_FOUND"


class JobStateError(ConflictError):
    """The job is not in a state that allows this (for example, no result yet)."""

    code = "JOB_NOT_READY"


class JobPurgedError(ConflictError):
    """The job's recording or results were deleted on request; they are gone for good."""

    code = "JOB_PURGED"
    status_code = 410


class UploadStateError(ConflictError):
    """The upload has no content yet, has expired, or was already used."""

    code = "UPLOAD_NOT_READY"


class RequestError(HarkError):
    """The request itself is malformed: wrong types, missing fields, unreadable body."""

    code = "INVALID_REQUEST"
    status_code = 422


class UploadTooLargeError(RequestError):
    code = "PAYLOAD_TOO_LARGE"
    status_code = 413


class UrlNotAllowedError(RequestError):
    """A URL Hark will not fetch or call: bad scheme, or a private/loopback/metadata address."""

    code = "URL_NOT_ALLOWED"


class FetchError(RequestError):
    """Fetching a source URL failed: unreachable, error status, too slow."""

    code = "FETCH_FAILED"


class HostNotAllowedError(RequestError):
    """The request's `Host` is not one this server answers to (a DNS-rebinding guard)."""

    code = "HOST_NOT_ALLOWED"
    status_code = 400


class AuthenticationError(HarkError):
    code = "UNAUTHORIZED"
    status_code = 401


class MediaLinkError(AuthenticationError):
    """A signed media link that is malformed, tampered with, expired, for another job,
    or made with a key that was revoked since."""

    code = "MEDIA_LINK_INVALID"


class PermissionDeniedError(HarkError):
    """The caller is known, but this request is not theirs to make."""

    code = "FORBIDDEN"
    status_code = 403


class CrossSiteRequestError(PermissionDeniedError):
    """A browser on another site sent a request that changes something, with no key."""

    code = "CROSS_SITE_REQUEST"


class RoleNotAllowedError(PermissionDeniedError):
    """The signed-in user's role in the organisation does not allow this."""

    code = "ROLE_NOT_ALLOWED"


class ScopeNotAllowedError(PermissionDeniedError):
    """The API key was not given the scope this request needs."""

    code = "SCOPE_NOT_ALLOWED"


class OperatorOnlyError(PermissionDeniedError):
    """Operations detail (workers, paths, every tenant's counts) is for operators' keys."""

    code = "OPERATOR_ONLY"


class QueueFullError(HarkError):
    code = "QUEUE_FULL"
    status_code = 429


class RateLimitedError(HarkError):
    """The key made more requests than its rate allows; `retry_after` seconds."""

    code = "RATE_LIMITED"
    status_code = 429


class QuotaExceededError(HarkError):
    """The organisation's quota (`quota`) would be passed: monthly audio or storage."""

    code = "QUOTA_EXCEEDED"
    status_code = 403


class ConcurrencyQuotaError(QuotaExceededError):
    """As many jobs or live streams run as the organisation may have at once."""

    status_code = 429


class LiveStreamsFullError(HarkError):
    """No live slot free: on the server, or for the caller's tenant."""

    code = "LIVE_STREAMS_FULL"
    status_code = 429


class LiveIdleError(RequestError):
    """A live stream's client sent nothing for too long."""

    code = "LIVE_IDLE"
    status_code = 408


class FrameTooLargeError(RequestError):
    code = "FRAME_TOO_LARGE"
    status_code = 413


class StorageError(HarkError):
    """File storage cannot be read or written."""

    code = "STORAGE_ERROR"
    status_code = 503


class WorkerLostError(HarkError):
    """A job's worker died too many times while running it."""

    code = "WORKER_LOST"
    status_code = 500


class JobTimeoutError(HarkError):
    """A job ran past the time its audio's length allows."""

    code = "JOB_TIMEOUT"
    status_code = 500


class DatabaseError(HarkError):
    """The database cannot be reached or used; the message names it (password hidden)."""

    code = "DATABASE_ERROR"
    status_code = 503


class SchemaMismatchError(DatabaseError):
    """The database schema is at a revision this version of Hark does not know."""

    code = "SCHEMA_MISMATCH"


class CanceledError(HarkError):
    """Raised inside the pipeline when its caller asks it to stop."""

    code = "CANCELED"
    status_code = 409
