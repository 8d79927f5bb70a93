"""Code that runs inside the pocketsphinx decoder processes.

Kept apart from the engine so a freshly spawned process imports only numpy and
pocketsphinx, not the rest of the pipeline.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import numpy as np

_decoder: Any = None
_frame_rate = 100

# Alternate pronunciations come back as `word(2)`.
_ALTERNATE = re.compile(r"\(\d+\)$")
_SKIP = {"<s>", "</s>", "<sil>"}

RawWord = tuple[str, float, float, float]


# How often a decoder process checks that the process that started it still exists.
PARENT_CHECK_SECONDS = 0.5


def init_decoder(config: dict[str, Any]) -> None:
    global _decoder, _frame_rate
    _exit_with_parent(os.getppid())
    from pocketsphinx import Decoder

    _decoder = Decoder(**config)
    _frame_rate = int(_decoder.config["frate"])


def _exit_with_parent(parent_pid: int) -> None:
    """End this process soon after its parent dies, however the parent died.

    A pool process otherwise waits for work forever once its parent is gone (a
    SIGKILLed job worker leaves its decoders behind, each holding a loaded model).
    PR_SET_PDEATHSIG would be quicker but follows the parent *thread*, and pools may be
    started from short-lived threads; polling the parent pid has no such catch.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="hark-parent-watch", daemon=True).start()


def ready() -> bool:
    return _decoder is not None


def decode_chunk(pcm: bytes) -> list[RawWord]:
    """Decode one utterance of 16 kHz int16 PCM; words as (text, start s, end s, posterior)."""
    decoder = _decoder
    # Feature state (noise estimate, CMN) would otherwise carry over from whichever
    # chunk this process decoded before, making results depend on scheduling.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm, no_search=False, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        return []
    words: list[RawWord] = []
    for seg in decoder.seg() or ():
        token = seg.word
        if token in _SKIP or token.startswith(("[", "++", "<")):
            continue
        # With bestpath search (the default) `prob` is the word's linear posterior.
        probability = float(np.clip(seg.prob, 0.0, 1.0))
        words.append((
            _ALTERNATE.sub("", token),
            seg.start_frame / _frame_rate,
            (seg.end_frame + 1) / _frame_rate,
            probability,
        ))
    return words
