"""Transcription jobs: submission, the durable queue, running, results and events."""
