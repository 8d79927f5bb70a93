"""One room and one microphone for everyone in a built conversation.

The corpus's voices were each recorded with their own microphone, room and codec,
and a speaker encoder hears that: voices pasted together from different recordings
are far easier to tell apart than people talking in one room. So every source is
first stripped of its own colouring (its long-term speech spectrum, smoothed over
half-octave bands, is evened out towards one common shape, by at most 12 dB), and
then the whole conversation goes through one channel: the same band limit for all
(telephone band when any source is narrowband), a room with one reverberation time
in which each speaker stands at their own place (own impulse response), and noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt, welch

from hark.pipeline.audio import SAMPLE_RATE

Span = tuple[float, float]

_FFT = 512
_MAX_CORRECTION_DB = 12.0
# A source whose speech holds nothing above this is narrowband (telephone, 8 kHz).
NARROWBAND_HZ = 4000.0


def _target_db(frequencies: np.ndarray) -> np.ndarray:
    """The common speech spectrum: flat to 500 Hz, then falling 6 dB per octave."""
    return np.asarray(-6.0 * np.log2(np.maximum(frequencies, 500.0) / 500.0))


def _smooth_db(frequencies: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Power in dB, averaged over a half-octave band around each frequency."""
    out = np.empty_like(power)
    for i, f in enumerate(frequencies):
        low, high = max(f, 50.0) * 2 ** -0.25, max(f, 50.0) * 2 ** 0.25
        band = (frequencies >= low) & (frequencies <= high)
        out[i] = np.mean(power[band]) if band.any() else power[i]
    return np.asarray(10 * np.log10(np.maximum(out, 1e-12)))


def flatten(samples: np.ndarray, speech: list[Span]) -> np.ndarray:
    """`samples` with the long-term spectrum of its speech evened out (see module)."""
    parts = [samples[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in speech]
    voiced = np.concatenate(parts) if parts else samples
    if voiced.size < _FFT:
        return samples
    frequencies, power = welch(voiced, fs=SAMPLE_RATE, nperseg=_FFT)
    measured = _smooth_db(frequencies, power)
    reference = np.interp(1000.0, frequencies, measured)
    wanted = _target_db(frequencies) - (measured - reference)
    # Nothing is lifted where the source has no signal at all (above its band).
    wanted[measured < measured.max() - 60.0] = 0.0
    correction = np.clip(wanted, -_MAX_CORRECTION_DB, _MAX_CORRECTION_DB)
    spectrum = np.fft.rfft(samples)
    gain = 10 ** (np.interp(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE), frequencies,
                            correction) / 20)
    return np.asarray(np.fft.irfft(spectrum * gain, n=samples.size), dtype=np.float32)


def bandwidth(samples: np.ndarray) -> float:
    """The highest frequency holding speech energy within 50 dB of the strongest."""
    frequencies, power = welch(samples, fs=SAMPLE_RATE, nperseg=_FFT)
    db = 10 * np.log10(np.maximum(power, 1e-20))
    strong = np.flatnonzero(db > db.max() - 50.0)
    return float(frequencies[strong[-1]]) if strong.size else SAMPLE_RATE / 2


@dataclass
class Room:
    """The channel of one conversation: band, reverberation, one response per speaker."""

    low_pass_hz: float
    rt60: float
    responses: list[np.ndarray]

    @staticmethod
    def draw(speakers: int, narrowband: bool, rng: np.random.Generator) -> Room:
        low_pass = 3400.0 if narrowband else float(rng.uniform(5500.0, 7600.0))
        rt60 = float(rng.uniform(0.15, 0.45))
        return Room(low_pass, rt60, [_impulse_response(rt60, rng) for _ in range(speakers)])

    def apply(self, samples: np.ndarray, speaker: int) -> np.ndarray:
        """The speaker's speech as the shared microphone hears it (tail included)."""
        band = butter(4, [100.0, self.low_pass_hz], btype="bandpass", fs=SAMPLE_RATE,
                      output="sos")
        wet = fftconvolve(samples, self.responses[speaker])
        return np.asarray(sosfilt(band, wet), dtype=np.float32)


def _impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A direct sound and an exponentially decaying diffuse tail, 3 to 10 dB below it."""
    length = int(rt60 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    tail = rng.normal(size=length) * np.exp(-6.9 * t / rt60)
    tail[: SAMPLE_RATE // 400] = 0.0  # the first reflections arrive after 2.5 ms
    ratio_db = float(rng.uniform(3.0, 10.0))
    tail *= 10 ** (-ratio_db / 20) / max(float(np.sqrt(np.sum(tail ** 2))), 1e-12)
    response = tail
    response[0] = 1.0
    return response


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as 1/f."""
    spectrum = np.fft.rfft(rng.normal(size=length))
    frequencies = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(frequencies, 20.0))
    noise = np.fft.irfft(spectrum, n=length)
    return np.asarray(noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12))
