"""Scoring Hark against reference transcripts (`hark eval`)."""
