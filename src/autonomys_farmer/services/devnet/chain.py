"""The development chain's rules, pure: the slot clock, the book of open slots and the solutions
submitted in them, and which solution authors a block. `DevNode` is their adapter to RPC and disk."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.sector import derive_global_challenge, derive_global_randomness
from autonomys_farmer.protocol.solution import Solution
from autonomys_farmer.protocol.types import SlotNumber


def slot_at(now: float, chain_start: float, slot_duration_s: float) -> SlotNumber:
    """Slots count from the chain's start (wall clock), so they keep increasing across restarts."""
    return SlotNumber(int((now - chain_start) / slot_duration_s) + 1)


def slot_proof_of_time(slot: SlotNumber) -> bytes:
    """Stand-in for proof of time: a deterministic 16-byte output per slot."""
    return blake3_hash(b"dev proof of time", struct.pack("<Q", slot))[:16]


def slot_challenge(slot: SlotNumber) -> bytes:
    return derive_global_challenge(derive_global_randomness(slot_proof_of_time(slot)), slot)


@dataclass
class SlotState:
    proof_of_time: bytes
    challenge: bytes
    solutions: list[tuple[int, Solution]] = field(default_factory=list)  # (distance, solution)
    closed: bool = False


@dataclass
class SlotBook:
    """The recent slots: solutions are taken while a slot is open and not full; a slot closes once its
    block authoring delay has passed."""

    history: int
    max_solutions: int
    slots: dict[SlotNumber, SlotState] = field(default_factory=dict)

    def open(self, slot: SlotNumber) -> SlotState:
        state = SlotState(slot_proof_of_time(slot), slot_challenge(slot))
        self.slots[slot] = state
        for old in [s for s in self.slots if s < slot - self.history]:
            del self.slots[old]
        return state

    def accepting(self, slot: int) -> SlotState | None:
        """The slot's state if a solution for it may still be submitted, else None (ignored)."""
        state = self.slots.get(SlotNumber(slot))
        if state is None or state.closed or len(state.solutions) >= self.max_solutions:
            return None
        return state

    def close_due(self, current: SlotNumber, authoring_delay: int) -> list[SlotNumber]:
        """Close every open slot whose authoring delay has passed (several if the clock jumped)."""
        due = sorted(s for s, state in self.slots.items() if s <= current - authoring_delay and not state.closed)
        for slot in due:
            self.slots[slot].closed = True
        return due


def block_candidates(solutions: list[tuple[int, Solution]], solution_range: int) -> list[Solution]:
    """Solutions that may author the slot's block (within half the solution range), best first; the
    rest of a slot's solutions are votes."""
    within = [(distance, solution) for distance, solution in solutions if distance <= solution_range // 2]
    return [solution for _distance, solution in sorted(within, key=lambda pair: pair[0])]


def must_force_block(slot: SlotNumber, last_block_slot: int, interval: int) -> bool:
    """The dev chain makes a block every `interval` slots even without a winner (0: never)."""
    return bool(interval) and slot - last_block_slot >= interval
