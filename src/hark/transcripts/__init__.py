"""Transcripts as people work on them: revisions (edited words, named speakers) over the
job's original result, full-text search across a tenant's transcripts, the job's media
for the player, and enrolling a voice straight from a transcript's speaker."""
