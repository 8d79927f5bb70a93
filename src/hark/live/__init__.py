"""Live transcription over a WebSocket: audio in as it is spoken, words out."""
