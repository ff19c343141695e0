"""Chain parameters in one place: mainnet values (compatibility) and the local dev chain.

Both use the real KZG setup: farmers embed it (as the official farmer does), so a dev chain with
another setup would need every farmer configured to match. `kzg.insecure_parameters` exists for
fully offline experiments.
"""

from __future__ import annotations

from dataclasses import dataclass

from autonomys_farmer.protocol import constants as c
from autonomys_farmer.protocol.solution import pieces_to_solution_range


@dataclass(frozen=True)
class ChainParams:
    name: str
    max_pieces_in_sector: int
    recent_segments: int
    recent_history_fraction: tuple[int, int]
    min_sector_lifetime: int
    slot_probability: tuple[int, int]
    slot_duration_secs: float
    block_authoring_delay: int  # slots between a slot's challenge and its solutions being collected
    confirmation_depth_k: int  # a block is archived once this many blocks sit on top of it
    block_payload_size: int  # dev node: bytes of synthetic extrinsics per block
    blocks_per_slot_interval: int  # dev node: force a block every this many slots without a winner
    expected_plotted_pieces: int  # tunes the solution range so a farm of this size wins regularly

    @property
    def farming_timeout_secs(self) -> float:
        return self.slot_duration_secs * self.block_authoring_delay

    def solution_range(self) -> int:
        return pieces_to_solution_range(self.expected_plotted_pieces, self.slot_probability)

    def voting_solution_range(self) -> int:
        # Votes are accepted in a wider range than blocks (about ten times as likely per slot).
        return min(c.U64_MAX, self.solution_range() * 10)


MAINNET = ChainParams(
    name="mainnet",
    max_pieces_in_sector=c.MAX_PIECES_IN_SECTOR,
    recent_segments=c.RECENT_SEGMENTS,
    recent_history_fraction=c.RECENT_HISTORY_FRACTION,
    min_sector_lifetime=c.MIN_SECTOR_LIFETIME,
    slot_probability=c.SLOT_PROBABILITY,
    slot_duration_secs=1.0,
    block_authoring_delay=c.BLOCK_AUTHORING_DELAY,
    confirmation_depth_k=100,
    block_payload_size=0,
    blocks_per_slot_interval=0,
    expected_plotted_pieces=1000,
)

DEV = ChainParams(
    name="dev",
    max_pieces_in_sector=8,
    recent_segments=c.RECENT_SEGMENTS,
    recent_history_fraction=c.RECENT_HISTORY_FRACTION,
    min_sector_lifetime=c.MIN_SECTOR_LIFETIME,
    slot_probability=c.SLOT_PROBABILITY,
    slot_duration_secs=1.0,
    block_authoring_delay=c.BLOCK_AUTHORING_DELAY,
    confirmation_depth_k=5,
    block_payload_size=256 * 1024,
    blocks_per_slot_interval=6,
    expected_plotted_pieces=16,
)

CHAINS = {p.name: p for p in (MAINNET, DEV)}
