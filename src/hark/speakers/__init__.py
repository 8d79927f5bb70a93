"""Voice profiles for speaker identification: enrol people, then name diarized speakers.

A profile is one person's voice in one tenant: the embeddings of one or more speech
samples and their centroid, which is what diarized speakers are compared with.
"""
