"""The microphone as a live source: 16 kHz mono PCM16 from PortAudio (`sounddevice`,
the `mic` extra), a tenth of a second at a time.

What can go wrong says what to do: the package missing names the extra, PortAudio
missing names the system package, and a machine without an input device says so
instead of failing somewhere inside the audio stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hark.errors import HarkError
from hark.pipeline.audio import SAMPLE_RATE

PIECE_FRAMES = SAMPLE_RATE // 10


class MicrophoneError(HarkError):
    """No microphone to record from, or no way to reach one."""

    code = "NO_MICROPHONE"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise MicrophoneError("recording from the microphone needs the mic extra: "
                              "pip install 'hark[mic]'") from None
    except OSError as exc:  # the module is there, PortAudio is not
        raise MicrophoneError(f"the microphone needs the PortAudio library ({exc}); on "
                              "Debian or Ubuntu: apt-get install libportaudio2") from None
    return sounddevice


def input_device(device: str | None) -> Any:
    """The device to record from: `device` (an index or part of a name), else the
    system's default input."""
    sd = _sounddevice()
    try:
        chosen = int(device) if device is not None and device.isdigit() else device
        info = sd.query_devices(chosen, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        found = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
        shown = "; inputs here: " + ", ".join(found) if found else "; this machine has none"
        raise MicrophoneError(f"no microphone {device or '(default)'}: {exc}{shown}",
                              device=device) from None
    return info


def microphone_frames(device: str | None) -> Iterator[bytes]:
    """PCM16 pieces from the microphone until the caller stops reading (Ctrl-C)."""
    sd = _sounddevice()
    info = input_device(device)
    # PortAudio resamples to 16 kHz mono where the device runs at another rate.
    with sd.RawInputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                           blocksize=PIECE_FRAMES, device=info["index"]) as stream:
        while True:
            data, _overflowed = stream.read(PIECE_FRAMES)
            yield bytes(data)
