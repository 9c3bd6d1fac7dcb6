"""The AAC AudioSpecificConfig (ISO/IEC 14496-3, 1.6.2.1): what an FLV audio tag cannot say.

An FLV audio tag's header has a two-bit sample-rate field (5.5 / 11 / 22 / 44 kHz) that is
always "44 kHz" for AAC; the real rate and channel layout live in the AAC sequence header.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
EXPLICIT_RATE = 15  # the frequency index that says "a 24-bit rate follows"
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "7.1"}
CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8}
SBR_TYPES = (5, 29)  # HE-AAC (v2): the output rate is the extension's


class AudioConfigError(ValueError):
    """The AudioSpecificConfig is truncated or names no valid sample rate."""


@dataclass(frozen=True)
class AudioConfig:
    object_type: int
    sample_rate: int
    channel_config: int  # 0: the layout is in a program config element (not read here)

    @property
    def channels(self) -> int | None:
        return CHANNELS.get(self.channel_config)

    @property
    def layout(self) -> str | None:
        return LAYOUTS.get(self.channel_config)


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, count: int) -> int:
        if self.pos + count > len(self.data) * 8:
            raise AudioConfigError("the AudioSpecificConfig is truncated")
        value = 0
        for _ in range(count):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _object_type(bits: _Bits) -> int:
    kind = bits.read(5)
    return 32 + bits.read(6) if kind == 31 else kind


def _sample_rate(bits: _Bits) -> int:
    index = bits.read(4)
    if index == EXPLICIT_RATE:
        rate = bits.read(24)
    elif index < len(SAMPLE_RATES):
        rate = SAMPLE_RATES[index]
    else:
        raise AudioConfigError(f"reserved sampling frequency index {index}")
    if not 1000 <= rate <= 192000:
        raise AudioConfigError(f"implausible sample rate {rate}")
    return rate


def parse_audio_config(data: bytes) -> AudioConfig:
    """Object type, sample rate (the SBR extension's for HE-AAC) and channel configuration."""
    bits = _Bits(data[:64])  # the fields read here fit in a few bytes; the rest is ignored
    object_type = _object_type(bits)
    rate = _sample_rate(bits)
    channel_config = bits.read(4)
    if object_type in SBR_TYPES:
        rate = _sample_rate(bits)
    return AudioConfig(object_type, rate, channel_config)
