"""Language names as OpenAI's verbose responses give them: Whisper's lowercase English
names ("english", "german"), not ISO codes."""

from hark.pipeline.languages import LANGUAGE_NAMES, language_name

__all__ = ["LANGUAGE_NAMES", "language_name"]
