"""The development chain's rules, pure: the slot clock, the book of open slots and the solutions
submitted in them, and which solution authors a block. `DevNode` is their adapter to RPC and disk."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.protocol.hexjson import HexError, hex_bytes, json_uint
from autonomys_farmer.protocol.reward_signing import SIGNATURE_SIZE
from autonomys_farmer.protocol.sector import derive_global_challenge, derive_global_randomness
from autonomys_farmer.protocol.solution import Solution, SolutionError
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


def pre_seal_hash(slot: SlotNumber, number: int, solution: Solution) -> bytes:
    """What the winning farmer signs for block `number` at `slot` (the dev chain's pre-seal hash)."""
    return blake3_hash(b"dev pre-seal", struct.pack("<QI", slot, number), solution.to_scale())


class AnnouncementError(ValueError):
    """A peer's block announcement that is malformed or breaks the chain's rules."""


@dataclass(frozen=True)
class BlockAnnouncement:
    """A block as one dev node tells its peers: its number, its slot, the slot of the block before it,
    and for an authored block the winning solution with the farmer's signature of the pre-seal hash (a
    forced block has neither). Blocks are a pure function of their number, so peers that agree on the
    numbers and slots hold the same chain and archive the same segments."""

    number: int
    slot: SlotNumber
    parent_slot: int
    solution: Solution | None = None
    signature: bytes | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "slot": self.slot,
            "parentSlot": self.parent_slot,
            "solution": None if self.solution is None else self.solution.to_json(),
            "signature": None if self.signature is None else self.signature.hex(),
        }

    @classmethod
    def from_json(cls, obj: object) -> BlockAnnouncement:
        if not isinstance(obj, dict):
            raise AnnouncementError(f"a block announcement is an object, got {type(obj).__name__}")
        try:
            number, slot, parent = json_uint(obj, "number", 32), json_uint(obj, "slot"), json_uint(obj, "parentSlot")
            raw_solution, raw_signature = obj.get("solution"), obj.get("signature")
            if (raw_solution is None) != (raw_signature is None):
                raise AnnouncementError("an authored block carries both its solution and its signature")
            if raw_solution is None:
                return cls(number, SlotNumber(slot), parent)
            if not isinstance(raw_solution, dict):
                raise AnnouncementError("solution must be an object")
            solution = Solution.from_json(raw_solution)
            signature = hex_bytes(raw_signature, SIGNATURE_SIZE, "signature")
            return cls(number, SlotNumber(slot), parent, solution, signature)
        except (HexError, SolutionError, KeyError, TypeError, ValueError) as e:
            raise AnnouncementError(f"malformed block announcement: {e}") from e

    def rule_broken(self, interval: int) -> str | None:
        """What makes this block invalid whatever the node's state (None: nothing)."""
        if self.number == 0:
            return "block 0 is genesis, never announced"
        if self.parent_slot >= self.slot:
            return f"parent slot {self.parent_slot} is not before slot {self.slot}"
        if self.solution is None and not must_force_block(self.slot, self.parent_slot, interval):
            gap = self.slot - self.parent_slot
            return f"a block without a winner at slot {self.slot}, only {gap} slot(s) after its parent"
        return None


@dataclass(frozen=True)
class ChainInfo:
    """What a dev node tells a peer about its chain: which chain, when its slots started, how high it
    is and how many segments it has archived."""

    chain: str
    genesis_hash: bytes
    chain_start: float
    best_block: int
    last_block_slot: int
    segments: int

    def to_json(self) -> dict[str, object]:
        return {
            "chain": self.chain,
            "genesisHash": self.genesis_hash.hex(),
            "chainStart": self.chain_start,
            "bestBlock": self.best_block,
            "lastBlockSlot": self.last_block_slot,
            "segments": self.segments,
        }

    @classmethod
    def from_json(cls, obj: object) -> ChainInfo:
        if not isinstance(obj, dict):
            raise AnnouncementError(f"chain info is an object, got {type(obj).__name__}")
        try:
            chain, start = obj["chain"], obj["chainStart"]
            if not isinstance(chain, str) or isinstance(start, bool) or not isinstance(start, int | float):
                raise AnnouncementError("chain must be a string and chainStart a number")
            return cls(
                chain,
                hex_bytes(obj["genesisHash"], 32, "genesisHash"),
                float(start),
                json_uint(obj, "bestBlock", 32),
                json_uint(obj, "lastBlockSlot"),
                json_uint(obj, "segments", 32),
            )
        except (HexError, KeyError) as e:
            raise AnnouncementError(f"malformed chain info: {e}") from e

    def differs_from(self, other: ChainInfo, clock: bool = True) -> str | None:
        """Why a peer with `other` is not on this chain (None: same chain, genesis and, with `clock`, slot
        clock; a node taking its history from a peer takes its clock too)."""
        if (other.chain, other.genesis_hash) != (self.chain, self.genesis_hash):
            return f"chain {other.chain!r} with genesis {other.genesis_hash.hex()[:16]}, not ours"
        if clock and abs(other.chain_start - self.chain_start) > 1e-3:
            return "slots counted from another start (give it a copy of our chain directory or --sync-from-peers)"
        return None
