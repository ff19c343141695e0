"""Farms at the operators' scale, laid out in seconds: 1000-piece sectors with well-formed metadata
(checksummed, s-bucket sizes that add up to the records' chunks), a sparse plot.bin, and random chunk
data in the sectors asked for. Audits cannot tell these from plotted sectors (they read the audited
s-bucket and hash it); proving needs really plotted records, which tests/history.py makes at dev size."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from autonomys_farmer.protocol.constants import (
    RECORD_NUM_CHUNKS,
    RECORD_NUM_S_BUCKETS,
    SECTOR_METADATA_CHECKSUMMED_SIZE,
)
from autonomys_farmer.protocol.sector import SectorMetadata
from autonomys_farmer.protocol.types import HistorySize, SectorIndex
from autonomys_farmer.services.storage.farm import METADATA_HEADER, METADATA_RESERVED, Farm

GENESIS = bytes(range(32))
SIZE_TEMPLATES = 16


def size_templates(pieces: int, rng: np.random.Generator) -> list[np.ndarray]:
    """s-bucket sizes as plotting gives them: about half the records in each s-bucket, more in the low
    ones (records fill up with unencoded chunks from s-bucket 0), summing to pieces × 32768."""
    templates = []
    for _ in range(SIZE_TEMPLATES):
        weights = 1.0 + 0.5 * np.exp(-np.arange(RECORD_NUM_S_BUCKETS) / 8000.0)
        sizes = rng.binomial(pieces, np.clip(0.5 * weights / weights.mean(), 0, 1)).astype(np.int64)
        excess = int(sizes.sum()) - pieces * RECORD_NUM_CHUNKS
        while excess:  # nudge random s-buckets (within 0..pieces) until the total is exact
            at = rng.integers(0, RECORD_NUM_S_BUCKETS, abs(excess))
            step = -1 if excess > 0 else 1
            ok = (sizes[at] + step >= 0) & (sizes[at] + step <= pieces)
            np.add.at(sizes, at[ok], step)
            excess = int(sizes.sum()) - pieces * RECORD_NUM_CHUNKS
        templates.append(sizes.astype(np.uint16))
    return templates


def lay_out_farm(
    directory: Path,
    sectors: int,
    pieces: int = 1000,
    data_sectors: tuple[int, ...] = (),
    seed: int = 0,
    history_size: int = 10,
) -> None:
    """Create a farm directory of `sectors` plotted sectors (metadata written directly, in bulk)."""
    rng = np.random.default_rng(seed)
    farm = Farm(directory, sectors, pieces, GENESIS)
    templates = size_templates(pieces, rng)
    fd = os.open(farm.metadata_path, os.O_WRONLY)
    try:
        batch = 256
        for start in range(0, sectors, batch):
            rows = b"".join(
                SectorMetadata(
                    SectorIndex(index), pieces, templates[index % SIZE_TEMPLATES], HistorySize(history_size)
                ).to_bytes()
                for index in range(start, min(start + batch, sectors))
            )
            os.pwrite(fd, rows, METADATA_RESERVED + start * SECTOR_METADATA_CHECKSUMMED_SIZE)
        os.pwrite(fd, METADATA_HEADER.pack(0, sectors), 0)
    finally:
        os.close(fd)
    plot = os.open(farm.plot_path, os.O_WRONLY)
    try:
        for index in data_sectors:
            for offset in range(0, farm.sector_size, 1 << 24):
                size = min(1 << 24, farm.sector_size - offset)
                os.pwrite(plot, rng.integers(0, 256, size, np.uint8).tobytes(), index * farm.sector_size + offset)
        os.fsync(plot)
    finally:
        os.close(plot)
    farm.close()
