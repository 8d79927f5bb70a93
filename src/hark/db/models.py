"""Every table in Hark's schema, imported so that `Base.metadata` knows them all.

Migrations compare the models with the database through this module; a new domain's
models module is added here.
"""

from __future__ import annotations

from hark.accounts.models import Membership, PasswordReset, RefreshToken, User
from hark.audit.models import AuditEvent
from hark.jobs.models import Job, Upload
from hark.keys.models import ApiKey
from hark.organisations.models import Organisation
from hark.speakers.models import SpeakerProfile, VoiceSample
from hark.transcripts.models import TranscriptRevision, TranscriptSegment, TranscriptState

__all__ = ["ApiKey", "AuditEvent", "Job", "Membership", "Organisation", "PasswordReset",
           "RefreshToken", "SpeakerProfile", "TranscriptRevision", "TranscriptSegment",
           "TranscriptState", "Upload", "User", "VoiceSample"]
