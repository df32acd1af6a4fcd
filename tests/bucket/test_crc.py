"""The parallel block CRC equals zlib's CRC-32 of the whole file."""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import pytest

from oreal.bucket.crc import crc32_combine, file_crc32


@pytest.mark.parametrize("seed", range(20))
def test_combine_matches_zlib(seed: int) -> None:
    rng = random.Random(seed)
    a, b = rng.randbytes(rng.randrange(0, 5000)), rng.randbytes(rng.randrange(0, 5000))
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 4000, 4321])
def test_block_crc_of_a_file_matches_zlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_crc32(str(path), block=1000) == f"{zlib.crc32(data):08x}"
    assert file_crc32(str(path)) == f"{zlib.crc32(data):08x}"


def test_a_changed_byte_changes_the_crc(tmp_path: Path) -> None:
    data = bytearray(os.urandom(10_000))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    before = file_crc32(str(path), block=1000)
    data[7777] ^= 1
    path.write_bytes(data)
    assert file_crc32(str(path), block=1000) != before
