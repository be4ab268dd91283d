"""WAV audio (PCM 8/16/32-bit or IEEE float 32/64-bit), memory-mapped: a 1-D signal (T, C).

The RIFF chunks are parsed here because the standard library's ``wave`` reads PCM only. Time
runs over [-1, 1] (first sample to last), the convention of the SIREN reference loaders; the
sample rate is kept in the attributes so exports play at the right speed.
"""

import struct
from pathlib import Path

import numpy as np

from nint_dist.errors import UserError
from nint_dist.sources import Source, block_rows, integer_range

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
AUDIO_DOMAIN = ((-1.0, 1.0),)


def wav_layout(path: Path) -> tuple[np.dtype, int, int, int, int]:
    """(sample dtype, channels, sample rate, data offset, frames) of a WAV file; UserError if broken."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            raise UserError(f"{path} is not a WAV file (no RIFF/WAVE header)")
        fmt = None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            tag, length = struct.unpack("<4sI", f.read(8))
            if tag == b"fmt ":
                fmt = f.read(min(length, 40))
            elif tag == b"data":
                if fmt is None or len(fmt) < 16:
                    raise UserError(f"{path}: WAV data chunk before a valid fmt chunk")
                return _describe(path, fmt, pos + 8, length, size)
            pos += 8 + length + (length & 1)
    raise UserError(f"{path} is truncated or has no WAV data chunk")


def _describe(path: Path, fmt: bytes, offset: int, length: int, size: int):
    code, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if code == EXTENSIBLE and len(fmt) >= 26:
        code = struct.unpack("<H", fmt[24:26])[0]
    kinds = {
        (PCM, 8): "u1",
        (PCM, 16): "<i2",
        (PCM, 32): "<i4",
        (IEEE_FLOAT, 32): "<f4",
        (IEEE_FLOAT, 64): "<f8",
    }
    if (code, bits) not in kinds:
        raise UserError(f"{path}: unsupported WAV sample format (format {code}, {bits} bits)")
    dtype = np.dtype(kinds[(code, bits)])
    if channels < 1 or block_align != channels * dtype.itemsize:
        raise UserError(f"{path}: inconsistent WAV header ({channels} channels, block {block_align} bytes)")
    if offset + length > size:
        raise UserError(
            f"{path} is truncated: its data chunk declares {length} bytes but {size - offset} remain"
        )
    frames = length // block_align
    if frames < 2:
        raise UserError(f"{path}: the recording holds {frames} samples; at least 2 are needed")
    return dtype, channels, rate, offset, frames


def read_wav(path: Path) -> Source:
    import dask.array as da

    dtype, channels, rate, offset, frames = wav_layout(path)
    raw = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(frames, channels))
    data = da.from_array(raw, chunks=(block_rows(raw[0].nbytes), channels))
    return Source(data, "audio", AUDIO_DOMAIN, integer_range(dtype), attrs={"sample_rate": rate})


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write (T, C) float samples as a 32-bit float WAV."""
    samples = np.ascontiguousarray(samples, dtype="<f4")
    frames, channels = samples.shape
    data_bytes = samples.nbytes
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack(
        "<IHHIIHH", 16, IEEE_FLOAT, channels, rate, rate * 4 * channels, 4 * channels, 32
    )
    with open(path, "wb") as f:
        f.write(header + b"data" + struct.pack("<I", data_bytes))
        f.write(samples.tobytes())
