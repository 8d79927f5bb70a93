"""A tiny Whisper model in CTranslate2 format, built offline in a fraction of a second.

The model has the real multilingual layout (51865 tokens, 99 languages, 1501 timestamp
tokens, 80 mel bins), so faster-whisper treats it like a downloaded checkpoint:
language detection, both tasks, prompts, hotwords, timestamps, word alignment, VAD and
the batched pipeline all run through their ordinary code paths.

Random weights alone make greedy decoding wander to the length limit without closing a
timestamp pair, so what the model says is scripted. Every decoder layer writes nothing
into the residual stream, which leaves the next-token logits a fixed function of the
previous token: a bigram table held in the embedding and projection matrices. Per
30-second window (or per clip) the model says one short sentence of five tokens that
faster-whisper splits into three words:

* with timestamps: ``<|0.00|>`` + sentence ending in "." + ``<|1.20|>`` + end of text;
* without timestamps (the batched pipeline's default): another sentence ending in "?".

Word timing is scripted too. The encoder's position signal carries one bump per
sentence token, and the alignment heads attend to the bump of the token they predict,
so the aligner places the words at fixed times from the start of each window or clip:
about 0.0-0.4 s, 0.4-0.75 s and 0.75-1.1 s (clips shorter than that squeeze the later
words, down to zero length). The audio does pass through random convolutions and
encoder layers, but the scripted signals dominate: text and word times depend on where
windows and clips fall, not on what they contain. The language is always detected as
English (probability about 0.9).
"""

from __future__ import annotations

import itertools
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ctranslate2.specs import WhisperSpec
from faster_whisper.tokenizer import _LANGUAGE_CODES
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

__all__ = ["CLOSING_TIMESTAMP_S", "build_tiny_whisper"]

FloatArray = npt.NDArray[np.float32]

D_MODEL = 64
FFN_DIM = 4 * D_MODEL
NUM_HEADS = 4
HEAD_DIM = D_MODEL // NUM_HEADS
NUM_ENCODER_LAYERS = 2
NUM_DECODER_LAYERS = 2
NUM_MELS = 80
ENCODER_POSITIONS = 1500
DECODER_POSITIONS = 448

# The v1/v2 multilingual layout: the 99 languages before "yue" came with large-v3.
LANGUAGES: tuple[str, ...] = tuple(code for code in _LANGUAGE_CODES if code != "yue")
NUM_TEXT_TOKENS = 50257
NUM_TIMESTAMPS = 1501
TIME_PRECISION_S = 0.02
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    *(f"<|{code}|>" for code in LANGUAGES),
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
EOT = NUM_TEXT_TOKENS
SOT = EOT + 1
FIRST_LANGUAGE = SOT + 1
TRANSLATE = FIRST_LANGUAGE + len(LANGUAGES)
TRANSCRIBE = TRANSLATE + 1
NO_SPEECH = TRANSCRIBE + 3
NO_TIMESTAMPS = NO_SPEECH + 1
TIMESTAMP_BEGIN = NO_TIMESTAMPS + 1
VOCAB_SIZE = TIMESTAMP_BEGIN + NUM_TIMESTAMPS

# Where each window's only timed segment closes, relative to the window start.
CLOSING_TIMESTAMP_S = 1.2
_CLOSING_INDEX = round(CLOSING_TIMESTAMP_S / TIME_PRECISION_S)

# Logit levels of the scripted decoder. Every entry stays within +-_LOGIT_CAP so that
# int8 row-wise quantisation of the projection (step = row maximum / 127) moves no
# logit by more than a small fraction of the margins between the levels.
_LOGIT_CAP = 20.0
_CHOSEN = 20.0
_RUNNER_UP = 18.0
_EOT_AFTER_TIMESTAMP = 12.0
_EOT_AFTER_OTHER = 15.0
_EOT_BEFORE_CLOSING = 5.0
_UNLIKELY = -10.0
_ENGLISH = 8.0
_OTHER_LANGUAGE_MAX = 2.0

# Sentence: a word, a continuation of it, two more words, closing punctuation.
_SENTENCE_WORDS = 3

# When each sentence token is spoken, relative to the window start (the punctuation
# is merged into the last word by faster-whisper).
_TOKEN_SPANS_S: tuple[tuple[float, float], ...] = (
    (0.0, 0.2),
    (0.2, 0.4),
    (0.4, 0.75),
    (0.75, 1.1),
    (1.1, CLOSING_TIMESTAMP_S),
)
_FRAME_S = 0.02
# Gaussian bumps in the encoder position signal, one per token, centred on its span.
_BUMP_WIDTH_FRAMES = 5.0
_BUMP_AMPLITUDE = 3.0
# Attention logit an alignment head adds at the centre of its token's bump.
_BUMP_BOOST = 8.0
# Gains of the random parts that touch the scripted signals: the cross-attention
# queries and keys (in the alignment heads they add to the bump logits), and the
# convolution and encoder layers, whose output the encoder's final layer norm mixes
# with the bumps. Small enough that neither can move a word boundary noticeably.
_ALIGNMENT_JITTER = 0.3
_AUDIO_GAIN = 0.3
_ENCODER_LAYER_GAIN = 0.1

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = tuple(c + v for c in _CONSONANTS for v in _VOWELS)


def build_tiny_whisper(out_dir: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Write a loadable faster-whisper model directory to `out_dir` and return it.

    The directory holds ``model.bin``, ``config.json``, ``vocabulary.json``,
    ``tokenizer.json`` and ``preprocessor_config.json``. The same seed always yields
    identical files; another seed changes the random weights and the scripted words.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = _text_tokens()
    states = _decoder_states(rng, _pick_script(rng))

    spec = WhisperSpec(NUM_ENCODER_LAYERS, NUM_HEADS, NUM_DECODER_LAYERS, NUM_HEADS)
    _fill_encoder(spec.encoder, rng)
    _fill_decoder(spec.decoder, rng, states)
    spec.register_vocabulary(
        [*tokens, *SPECIAL_TOKENS, *(_timestamp_token(i) for i in range(NUM_TIMESTAMPS))]
    )
    spec.config.suppress_ids = []
    # Whisper never starts a text with a bare space or an immediate end of text.
    spec.config.suppress_ids_begin = [ord(" "), EOT]
    spec.config.lang_ids = list(range(FIRST_LANGUAGE, TRANSLATE))
    spec.config.alignment_heads = [[NUM_DECODER_LAYERS - 1, h] for h in range(NUM_HEADS)]
    spec.validate()
    spec.save(str(out_dir))

    _write_tokenizer(out_dir / "tokenizer.json", tokens)
    preprocessor = {
        "chunk_length": 30,
        "feature_size": NUM_MELS,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "sampling_rate": 16000,
    }
    (out_dir / "preprocessor_config.json").write_text(
        json.dumps(preprocessor, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return out_dir


# --- vocabulary -----------------------------------------------------------------------


def _byte_characters() -> list[str]:
    """The byte-level BPE alphabet: one printable character standing for each byte.

    Printable bytes keep their own character; the rest are shifted past U+00FF in
    order, so a space becomes "Ġ". This is the mapping the `tokenizers` ByteLevel
    pre-tokenizer and decoder use, which is what lets the vocabulary's strings decode
    back to the intended text.
    """
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    characters: list[str] = []
    shifted = 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + shifted))
            shifted += 1
    return characters


def _pseudo_words() -> Iterator[str]:
    # Every string of syllables, shortest first: distinct and pronounceable-looking.
    for length in itertools.count(1):
        for parts in itertools.product(_SYLLABLES, repeat=length):
            yield "".join(parts)


def _text_tokens() -> list[str]:
    """The 50257 text tokens: one per byte (id = byte value), pseudo-words, and "".

    Pseudo-words at even offsets start with a space (they begin a word) and the odd
    ones continue the previous word, so decoded text splits into words the way real
    subwords do. The last text token is the empty string because CTranslate2 decides
    that a Whisper model is multilingual by finding "" in its vocabulary.
    """
    tokens = _byte_characters()
    space = tokens[ord(" ")]
    pairs = (NUM_TEXT_TOKENS - 1 - len(tokens)) // 2
    for word in itertools.islice(_pseudo_words(), pairs):
        tokens += [space + word, word]
    tokens.append("")
    if len(tokens) != NUM_TEXT_TOKENS:
        raise AssertionError("text vocabulary has the wrong size")
    return tokens


def _timestamp_token(index: int) -> str:
    return f"<|{index * TIME_PRECISION_S:.2f}|>"


def _write_tokenizer(path: pathlib.Path, tokens: list[str]) -> None:
    # Without merges any text still encodes, byte by byte, which is all faster-whisper
    # needs for prompts, hotwords and its list of suppressed symbols; the pseudo-words
    # the model emits decode through their own vocabulary entries.
    bpe = models.BPE(vocab={token: index for index, token in enumerate(tokens)}, merges=[])
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [*SPECIAL_TOKENS, *(_timestamp_token(i) for i in range(NUM_TIMESTAMPS))]
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    if (
        tokenizer.get_vocab_size() != VOCAB_SIZE
        or tokenizer.token_to_id("<|0.00|>") != TIMESTAMP_BEGIN
    ):
        raise RuntimeError("tokenizer ids drifted from the model vocabulary")
    tokenizer.save(str(path))


# --- scripted decoder -------------------------------------------------------------------


@dataclass(frozen=True)
class _Script:
    """The two sentences, as token ids."""

    timed: tuple[int, ...]
    untimed: tuple[int, ...]


@dataclass(frozen=True)
class _States:
    """The decoder as a finite-state table.

    `logits[s]` are the next-token logits in state `s`; `state_of[t]` is the state the
    decoder is in right after reading token `t`; `rank[s]` is the place in the sentence
    of the token predicted from state `s`, which picks the encoder bump the alignment
    heads attend to, or -1 for a state whose alignment attention stays flat.
    """

    logits: FloatArray
    state_of: npt.NDArray[np.intp]
    rank: npt.NDArray[np.intp]


def _pick_script(rng: np.random.Generator) -> _Script:
    word_starts = np.arange(256, NUM_TEXT_TOKENS - 1, 2)
    starts = rng.choice(word_starts, size=2 * _SENTENCE_WORDS, replace=False)
    tails = rng.choice(word_starts + 1, size=2, replace=False)

    def sentence(first: int, tail: int, mark: str) -> tuple[int, ...]:
        words = [int(token) for token in starts[first : first + _SENTENCE_WORDS]]
        return (words[0], tail, *words[1:], ord(mark))

    return _Script(
        timed=sentence(0, int(tails[0]), "."),
        untimed=sentence(_SENTENCE_WORDS, int(tails[1]), "?"),
    )


def _decoder_states(rng: np.random.Generator, script: _Script) -> _States:
    rows: list[FloatArray] = []
    ranks: list[int] = []
    state_of = np.zeros(VOCAB_SIZE, dtype=np.intp)
    timestamps = slice(TIMESTAMP_BEGIN, VOCAB_SIZE)
    offsets = np.arange(NUM_TIMESTAMPS, dtype=np.float32)

    def add_state(*owners: int, rank: int = -1) -> FloatArray:
        row = np.zeros(VOCAB_SIZE, dtype=np.float32)
        row[timestamps] = _UNLIKELY
        state_of[list(owners)] = len(rows)
        rows.append(row)
        ranks.append(rank if rank < len(_TOKEN_SPANS_S) else -1)
        return row

    # Anything unscripted (a text prefix, say) ends the text.
    add_state()[EOT] = _EOT_AFTER_OTHER

    # Language detection reads the logits after <|startoftranscript|>, and so does the
    # no-speech probability, kept near zero so no window is dropped as silence.
    after_sot = add_state(SOT)
    after_sot[NO_SPEECH] = _UNLIKELY
    after_sot[FIRST_LANGUAGE:TRANSLATE] = rng.uniform(0.0, _OTHER_LANGUAGE_MAX, len(LANGUAGES))
    after_sot[FIRST_LANGUAGE + LANGUAGES.index("en")] = _ENGLISH

    # Timed generation starts right after the task token, where the timestamp rules
    # allow only an early timestamp; the earliest is preferred.
    after_task = add_state(TRANSCRIBE, TRANSLATE)
    after_task[timestamps] = np.maximum(_CHOSEN - 2.0 * offsets, -_LOGIT_CAP)

    # After an opening timestamp the rules forbid another timestamp, so the sentence
    # starts; after the closing one they forbid text, so the end of text wins.
    after_timestamp = add_state(*range(TIMESTAMP_BEGIN, VOCAB_SIZE))
    after_timestamp[script.timed[0]] = _CHOSEN
    after_timestamp[EOT] = _EOT_AFTER_TIMESTAMP

    # The aligner always scores a text after <|notimestamps|>, so the timed sentence
    # gets a likely second place here to keep its first word's probability sensible.
    after_no_timestamps = add_state(NO_TIMESTAMPS, rank=0)
    after_no_timestamps[script.untimed[0]] = _CHOSEN
    after_no_timestamps[script.timed[0]] = _RUNNER_UP

    for sentence in (script.timed, script.untimed):
        for rank, (token, following) in enumerate(itertools.pairwise(sentence), start=1):
            add_state(token, rank=rank)[following] = _CHOSEN

    closing = add_state(script.timed[-1], rank=len(script.timed))
    closing[EOT] = _EOT_BEFORE_CLOSING
    closing[timestamps] = np.maximum(_CHOSEN - 0.5 * np.abs(offsets - _CLOSING_INDEX), -_LOGIT_CAP)
    add_state(script.untimed[-1], rank=len(script.untimed))[EOT] = _CHOSEN

    logits = np.stack(rows)
    if np.abs(logits).max() > _LOGIT_CAP:
        raise AssertionError("logit table exceeds the quantisation-safe range")
    return _States(logits, state_of, np.asarray(ranks, dtype=np.intp))


def _fill_decoder(decoder: Any, rng: np.random.Generator, states: _States) -> None:
    """Embeddings and projection implement the state table; layers write nothing.

    Residual stream = token embedding + position embedding. State k's embedding is
    e[2k] - e[2k+1], in the first half of the dimensions; positions live in the second
    half, zero-mean with the same norm. Every layer norm therefore divides by the same
    constant, and a matrix reading the first half sees each state as its own
    orthogonal direction whatever the position: the projection turns it into that
    state's logits, the alignment heads' queries into a pointer at its token's bump.
    """
    num_states = states.logits.shape[0]
    half = D_MODEL // 2
    if 2 * num_states > half:
        raise AssertionError("too many decoder states for the model width")

    state_vectors = np.zeros((num_states, D_MODEL), dtype=np.float32)
    state_columns = 2 * np.arange(num_states)
    state_vectors[np.arange(num_states), state_columns] = 1.0
    state_vectors[np.arange(num_states), state_columns + 1] = -1.0

    positions = np.zeros((DECODER_POSITIONS, D_MODEL), dtype=np.float32)
    raw = rng.standard_normal((DECODER_POSITIONS, D_MODEL - half))
    raw -= raw.mean(axis=1, keepdims=True)
    positions[:, half:] = raw * np.sqrt(2.0) / np.linalg.norm(raw, axis=1, keepdims=True)

    # Both halves have squared norm 2, so a layer norm divides by sqrt(4 / D_MODEL)
    # and state k reaches the next matrix as this value in column 2k.
    normalised = float(np.sqrt(D_MODEL / 4.0))
    projection = np.zeros((VOCAB_SIZE, D_MODEL), dtype=np.float32)
    projection[:, state_columns] = states.logits.T / normalised

    decoder.embeddings.weight = state_vectors[states.state_of]
    decoder.position_encodings.encodings = positions
    _fill_norm(decoder.layer_norm)
    decoder.projection.weight = projection
    for index, layer in enumerate(decoder.layer):
        _fill_attention(layer.self_attention, rng, gain=0.0)
        _fill_cross_attention(layer.attention, rng)
        if index == NUM_DECODER_LAYERS - 1:
            _script_alignment(layer.attention, states, state_columns, normalised)
        _fill_ffn(layer.ffn, rng, gain=0.0)


def _script_alignment(
    attention: Any, states: _States, state_columns: npt.NDArray[np.intp], normalised: float
) -> None:
    """Point the first query/key components of every alignment head at the bumps.

    Key component m of each head reads bump m of the encoder output; query component m
    is nonzero only in the states whose predicted token has rank m, sized so that the
    attention logit rises by _BUMP_BOOST at the bump's centre.
    """
    query, query_bias = attention.linear[0].weight, attention.linear[0].bias
    key_value, key_bias = attention.linear[1].weight, attention.linear[1].bias
    pointer = _BUMP_BOOST * np.sqrt(HEAD_DIM) / (_BUMP_AMPLITUDE * normalised)
    for head in range(NUM_HEADS):
        for bump in range(len(_TOKEN_SPANS_S)):
            component = head * HEAD_DIM + bump
            query[component, :] = 0.0
            query[component, state_columns] = np.where(states.rank == bump, pointer, 0.0)
            query_bias[component] = 0.0
            # Reading the pair's difference cancels any common shift of the layer norm.
            key_value[component, :] = 0.0
            key_value[component, 2 * bump] = 0.5
            key_value[component, 2 * bump + 1] = -0.5
            key_bias[component] = 0.0


# --- random layers ----------------------------------------------------------------------


def _normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> FloatArray:
    values = rng.standard_normal(shape, dtype=np.float32)
    values /= np.float32(np.sqrt(fan_in))
    return values


def _fill_norm(norm: Any) -> None:
    norm.gamma = np.ones(D_MODEL, dtype=np.float32)
    norm.beta = np.zeros(D_MODEL, dtype=np.float32)


def _fill_linear(
    linear: Any, rng: np.random.Generator, rows: int, columns: int, *, gain: float = 1.0
) -> None:
    linear.weight = gain * _normal(rng, (rows, columns), columns)
    linear.bias = gain * _normal(rng, (rows,), columns)


def _fill_attention(attention: Any, rng: np.random.Generator, *, gain: float) -> None:
    """Self-attention: fused q, k, v; `gain` scales what the layer adds to the residual."""
    _fill_norm(attention.layer_norm)
    _fill_linear(attention.linear[0], rng, 3 * D_MODEL, D_MODEL)
    _fill_linear(attention.linear[1], rng, D_MODEL, D_MODEL, gain=gain)


def _fill_cross_attention(attention: Any, rng: np.random.Generator) -> None:
    # Small queries and keys, so that in the alignment heads they barely disturb the
    # scripted bumps; the output is silent like every decoder layer's.
    _fill_norm(attention.layer_norm)
    _fill_linear(attention.linear[0], rng, D_MODEL, D_MODEL, gain=_ALIGNMENT_JITTER)
    _fill_linear(attention.linear[1], rng, 2 * D_MODEL, D_MODEL, gain=_ALIGNMENT_JITTER)
    _fill_linear(attention.linear[2], rng, D_MODEL, D_MODEL, gain=0.0)


def _fill_ffn(ffn: Any, rng: np.random.Generator, *, gain: float) -> None:
    _fill_norm(ffn.layer_norm)
    _fill_linear(ffn.linear_0, rng, FFN_DIM, D_MODEL)
    _fill_linear(ffn.linear_1, rng, D_MODEL, FFN_DIM, gain=gain)


def _encoder_positions() -> FloatArray:
    """Zero-mean rows of squared norm D_MODEL: token bumps, their complement, sinusoids.

    Keeping every row's mean and norm fixed makes the encoder's final layer norm an
    identity on the position signal, so the bumps reach the alignment heads intact
    apart from the audio's perturbation.
    """
    frames = np.arange(ENCODER_POSITIONS, dtype=np.float64)
    centres = [(start + end) / 2.0 / _FRAME_S for start, end in _TOKEN_SPANS_S]
    bumps = [
        _BUMP_AMPLITUDE * np.exp(-0.5 * ((frames - centre) / _BUMP_WIDTH_FRAMES) ** 2)
        for centre in centres
    ]
    waves = (D_MODEL - 2 * len(bumps) - 2) // 4
    # Each wave's four columns add 2 to the squared norm and each bump pair twice its
    # square; the complement pair takes up the rest.
    spare = (D_MODEL - 2.0 * waves) / 2.0 - np.sum(np.square(bumps), axis=0)
    if spare.min() < 0.0:
        raise AssertionError("encoder bumps overflow the position norm")
    complement = np.sqrt(spare)
    frequencies = np.exp(-np.log(1000.0) * np.arange(waves) / waves)
    angles = frames[:, None] * frequencies[None, :]
    columns: list[npt.NDArray[np.float64]] = []
    for bump in bumps:
        columns += [bump, -bump]
    columns += [complement, -complement]
    for wave in range(waves):
        sine, cosine = np.sin(angles[:, wave]), np.cos(angles[:, wave])
        columns += [sine, -sine, cosine, -cosine]
    return np.stack(columns, axis=1).astype(np.float32)


def _fill_encoder(encoder: Any, rng: np.random.Generator) -> None:
    encoder.conv1.weight = _normal(rng, (D_MODEL, NUM_MELS, 3), 3 * NUM_MELS)
    encoder.conv1.bias = _normal(rng, (D_MODEL,), 3 * NUM_MELS)
    encoder.conv2.weight = _AUDIO_GAIN * _normal(rng, (D_MODEL, D_MODEL, 3), 3 * D_MODEL)
    encoder.conv2.bias = _AUDIO_GAIN * _normal(rng, (D_MODEL,), 3 * D_MODEL)
    encoder.position_encodings.encodings = _encoder_positions()
    _fill_norm(encoder.layer_norm)
    for layer in encoder.layer:
        _fill_attention(layer.self_attention, rng, gain=_ENCODER_LAYER_GAIN)
        _fill_ffn(layer.ffn, rng, gain=_ENCODER_LAYER_GAIN)
