"""Hark's speech pipeline: decode → VAD → recognition → transcript → writers.

Nothing here imports the web, database or queue layers; every front end calls
`hark.pipeline.run.transcribe_file`.
"""
