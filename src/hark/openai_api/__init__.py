"""OpenAI-compatible audio API: `/v1/audio/transcriptions`, `/v1/audio/translations`
and `/v1/models`, answering as OpenAI's API does so that its official SDKs work."""
