"""Every table in Hark's schema, imported so that `Base.metadata` knows them all.

Migrations compare the models with the database through this module; a new domain's
models module is added here.
"""

from __future__ import annotations

from hark.speakers.models import SpeakerProfile, VoiceSample

__all__ = ["SpeakerProfile", "VoiceSample"]
