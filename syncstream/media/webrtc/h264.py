"""H.264 from FLV/MP4 form (AVCC: length-prefixed NAL units) to RTP's Annex-B form."""

from __future__ import annotations

import struct

START_CODE = b"\x00\x00\x00\x01"


def parse_avc_config(record: bytes) -> tuple[list[bytes], int]:
    """(SPS and PPS NAL units, NAL length size) of an AVCDecoderConfigurationRecord."""
    if len(record) < 7 or record[0] != 1:
        raise ValueError("not an AVCDecoderConfigurationRecord")
    length_size = (record[4] & 0x03) + 1
    units, pos = [], 6
    for count_pos in (5, None):
        count = (record[5] & 0x1F) if count_pos == 5 else record[pos]
        if count_pos is None:
            pos += 1
        for _ in range(count):
            size = struct.unpack_from(">H", record, pos)[0]
            units.append(record[pos + 2 : pos + 2 + size])
            pos += 2 + size
    return units, length_size


def to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Replace each NAL unit's length prefix by a start code."""
    out, pos, end = [], 0, len(data)
    while pos + length_size <= end:
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > end:
            break
        out.append(START_CODE)
        out.append(data[pos : pos + size])
        pos += size
    return b"".join(out)
