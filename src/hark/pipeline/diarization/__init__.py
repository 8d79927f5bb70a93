"""Speaker diarization and identification."""
