"""The farming rules a plot client follows, as small pure pieces (the plot client is their adapter):
which slots to farm, how many wins a slot can afford, when to stop trusting slow proof servers, which
sectors to replot before they expire, and when a plot job is issued again."""

from __future__ import annotations

import statistics
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TypeVar

from autonomys_farmer.protocol.sector import derive_expiration_history_size, expiration_check_segment_index
from autonomys_farmer.protocol.types import HistorySize, SegmentIndex, SlotNumber

K = TypeVar("K")


SLOT_WINDOW = 64  # distinct recent slot numbers whose offsets from the clock set the expected offset
MAX_SLOT_DRIFT = 30.0  # slots a real slot may stray from where the recent ones put the clock
SLOTS_REMEMBERED = 1024  # farmed slot numbers kept to farm each once


@dataclass
class SlotSequence:
    """Slots arrive from every controller: farm each slot number once, if plausible.

    Slot numbers follow the clock (about one per second, driven by proof of time), so the offset
    `slot - now` barely moves. A slot is plausible when its offset is within MAX_SLOT_DRIFT of the
    median offset of the last SLOT_WINDOW distinct slot numbers seen (itself included). One forged
    number cannot move that median, and there is no monotonic "last" it could push ahead: it costs only
    itself, and the real slots before and after it are farmed. A real change of pace moves the median
    within half the window. `implausible` counts refusals."""

    offsets: OrderedDict[int, float] = field(default_factory=OrderedDict)
    farmed: OrderedDict[int, None] = field(default_factory=OrderedDict)
    implausible: int = 0

    def accept(self, slot: SlotNumber, now: float) -> bool:
        if slot in self.farmed:
            return False
        if slot not in self.offsets:
            self.offsets[slot] = slot - now
            if len(self.offsets) > SLOT_WINDOW:
                self.offsets.popitem(last=False)
        if abs(slot - now - statistics.median(self.offsets.values())) > MAX_SLOT_DRIFT:
            self.implausible += 1
            return False
        self.farmed[slot] = None
        if len(self.farmed) > SLOTS_REMEMBERED:
            self.farmed.popitem(last=False)
        return True

    def expected(self, now: float) -> float | None:
        """The slot number the recent slots put at `now` (None before any)."""
        return statistics.median(self.offsets.values()) + now if self.offsets else None


class SkipReason(StrEnum):
    """Why a slot was not audited. Wins being proved never are a reason: proving (on a proof server or
    here) runs beside later slots' audits, each slot's proofs held to its own deadline."""

    AUDIT_RUNNING = "audit-running"  # the previous slot's audit had not finished
    IMPLAUSIBLE = "implausible"  # a slot number far from where the recent slots put the clock


FARMING_TIMEOUT_S = 4.0  # a slot's audit, proving and submission: later, the node no longer takes it
MAX_WINS_PER_SLOT = 16  # wins of one slot proved together at most
PROOF_TIME_MARGIN = 1.25  # proofs vary: a further win is tried only if it fits with a quarter to spare


def wins_to_prove(elapsed_s: float, timeout_s: float, estimate_s: float, available: int, in_flight: int = 0) -> int:
    """How many of a slot's wins (best first) to prove together, while `in_flight` wins of earlier
    slots are still being proved ahead of them. With none in flight the first is always tried while the
    slot is open; more only as far as the running per-win estimate says they land before the deadline
    after those in flight: a late proof is ignored by the node and takes compute from the next slot, so
    proving slower than wins come sends only what can land (conservative with several proof servers)."""
    if elapsed_s > timeout_s or available == 0:
        return 0
    fit = int((timeout_s - elapsed_s) // (estimate_s * PROOF_TIME_MARGIN)) - in_flight if estimate_s > 0 else 1
    return min(available, MAX_WINS_PER_SLOT, max(0 if in_flight else 1, fit))


@dataclass
class ProofTime:
    """Moving average of the proving time per win (a batch's time over its wins; the first observation
    taken as is)."""

    seconds: float = 0.0
    weight: float = 0.3

    def observe(self, took_s: float) -> None:
        self.seconds = took_s if not self.seconds else (1 - self.weight) * self.seconds + self.weight * took_s


class Miss(Enum):
    DROP = "drop"  # this win is lost (its budget is spent), proof servers stay in use
    BYPASS = "bypass"  # proof servers missed too often: prove locally for a while


@dataclass
class ProofServerBreaker:
    """Proof servers that keep missing the slot budget are bypassed for a while (local proving), as long
    as a proof here can still land: when it cannot either (a loaded machine), they are the only chance,
    and one answer in time ends the bypass."""

    strikes_to_bypass: int = 3
    bypass_s: float = 60.0
    strikes: int = 0
    bypass_until: float = 0.0

    def use_proof_servers(self, now: float, local_proof_lands: bool = True) -> bool:
        return now >= self.bypass_until or not local_proof_lands

    def answered(self) -> None:
        self.strikes = 0
        self.bypass_until = 0.0

    def missed(self, now: float) -> Miss:
        self.strikes += 1
        if self.strikes < self.strikes_to_bypass:
            return Miss.DROP
        self.strikes = 0
        self.bypass_until = now + self.bypass_s
        return Miss.BYPASS


@dataclass(frozen=True)
class PlottedSector:
    """What the expiry rule needs to know of a plotted sector."""

    sector_id: bytes
    history_size: HistorySize


def expiry_check_segments(sectors: Iterable[PlottedSector], min_sector_lifetime: int) -> set[SegmentIndex]:
    """The segments whose commitments decide when these sectors expire."""
    return {expiration_check_segment_index(s.history_size, min_sector_lifetime) for s in sectors}


def sectors_to_replot(
    sectors: Mapping[K, PlottedSector],
    commitments: Mapping[SegmentIndex, bytes],
    current_segment: SegmentIndex,
    min_sector_lifetime: int,
) -> list[K]:
    """Sectors that expire by the next segment (replotted before the node would reject their
    solutions). A sector whose expiry-check segment is not archived yet cannot expire so soon."""
    due = []
    for key, sector in sectors.items():
        commitment = commitments.get(expiration_check_segment_index(sector.history_size, min_sector_lifetime))
        if commitment is None:
            continue
        expires = derive_expiration_history_size(sector.sector_id, sector.history_size, commitment, min_sector_lifetime)
        if expires is not None and expires - 1 <= current_segment + 1:
            due.append(key)
    return due


def issue_job_again(still_queued: bool, holders_alive: bool) -> bool:
    """A plot job that has been silent a while is issued again only when nobody can still plot it: its
    message has left the work queue (taken and acknowledged) and no plot server that reported work on
    it is alive. A job waiting in the queue, or held by a live server, or unacknowledged by a dead one
    (the work queue redelivers it), must not be issued twice: both copies would be plotted."""
    return not still_queued and not holders_alive
