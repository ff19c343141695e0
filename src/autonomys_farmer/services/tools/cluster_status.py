"""The live view of a cluster, built only from what its members already publish (heartbeats with
their status, slots, farm events): `autonomys-farmer dev` shows it, and `autonomys-farmer cluster
--nats-server … status [--json]` shows it for any running cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from typing import Any

from autonomys_farmer.cluster import subjects
from autonomys_farmer.cluster.farming import SlotSequence
from autonomys_farmer.cluster.messages import (
    DROP_AFTER_S,
    CacheStatus,
    ControllerStatus,
    FarmEvent,
    FarmEventKind,
    Heartbeat,
    PlotClientStatus,
    PlotServerStatus,
    PlotStage,
    ProofServerStatus,
    SectorProgress,
    status_figures,
)
from autonomys_farmer.protocol.farmer_rpc import SlotInfo
from autonomys_farmer.services.transport.nats_bus import Bus, NatsAuth

EVENT_LINES = 8
SOLUTION_WINDOW_S = 3600.0  # solutions per hour are counted over the last hour


class ClusterStatus:
    """Members, slots and farm events as seen on NATS, and the views of them."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], Heartbeat] = {}
        self.seen: dict[tuple[str, str], float] = {}
        self.slot = 0
        self._slots = SlotSequence()
        self.solutions = {FarmEventKind.SOLUTION: 0, FarmEventKind.LATE: 0, FarmEventKind.INVALID: 0}
        self._accepted_at: deque[float] = deque()
        self._by_controller: dict[str, tuple[int, int, int]] = {}  # its (accepted, late, invalid) last heard
        self.events: deque[str] = deque(maxlen=EVENT_LINES)
        self.started = time.monotonic()
        self._encoding_since: dict[tuple[str, int], tuple[float, int]] = {}  # sector -> (when, records done)
        self.plot_jobs_queued: int | None = None  # plot jobs waiting in the work queue (JetStream)
        self.archiving: tuple[int, int, float] | None = None  # a dev node's (done, total, elapsed s)

    async def attach(self, bus: Bus) -> None:
        await bus.subscribe(subjects.HEARTBEAT, self._heartbeat)
        await bus.subscribe(subjects.FARM_EVENTS, self._farm_event)
        await bus.subscribe(subjects.SLOT_INFO, self._slot)

    async def _heartbeat(self, beat: Heartbeat) -> None:
        self.members[(beat.kind, beat.instance_id)] = beat
        self.seen[(beat.kind, beat.instance_id)] = time.monotonic()
        if isinstance(beat.status, ControllerStatus):
            self._count_solutions(beat.instance_id, beat.status)

    def _count_solutions(self, controller: str, status: ControllerStatus) -> None:
        """Solution counts are the node's answers as controllers saw them (only a controller may send
        a controller's heartbeat; a plot client's word, or a forged plot client's, is not counted).
        A controller that restarts starts from zero: what it counted before stays counted."""
        previous = self._by_controller.get(controller, (0, 0, 0))
        counts = (status.accepted, status.late, status.invalid)
        self._by_controller[controller] = counts
        for kind, before, now in zip(self.solutions, previous, counts, strict=True):
            self.solutions[kind] += max(0, now - before)
        self._accepted_at.extend([time.monotonic()] * max(0, counts[0] - previous[0]))

    async def _slot(self, slot: SlotInfo) -> None:
        if self._slots.accept(slot.slot_number, time.monotonic()):  # a forged far-off slot is not shown
            self.slot = max(self.slot, slot.slot_number)

    async def _farm_event(self, event: FarmEvent) -> None:
        self.events.append(event_line(event))

    async def refresh(self, bus: Bus) -> None:
        """What heartbeats do not carry: the plot-job queue's depth (None when JetStream cannot say)."""
        try:
            info = await bus.js.stream_info(subjects.PLOT_JOBS.stream)
            self.plot_jobs_queued = info.state.messages
        except Exception:  # no queue yet, or NATS busy: the view shows it as unknown
            self.plot_jobs_queued = None

    @property
    def accepted(self) -> int:
        return self.solutions[FarmEventKind.SOLUTION]

    def solutions_per_hour(self) -> float:
        now = time.monotonic()
        while self._accepted_at and now - self._accepted_at[0] > SOLUTION_WINDOW_S:
            self._accepted_at.popleft()
        window = min(SOLUTION_WINDOW_S, max(now - self.started, 1.0))
        return len(self._accepted_at) * 3600.0 / window

    def live(self) -> list[Heartbeat]:
        now = time.monotonic()
        return [b for k, b in sorted(self.members.items()) if now - self.seen[k] < DROP_AFTER_S]

    def summary(self) -> str:
        s = self.solutions
        clients = [beat.status for beat in self.live() if isinstance(beat.status, PlotClientStatus)]
        slots = sum(client.slots for client in clients)
        skipped = sum(client.skipped_audit_running for client in clients)
        return (
            f"{s[FarmEventKind.SOLUTION]} solution(s) accepted, {s[FarmEventKind.LATE]} late (ignored by the node), "
            f"{s[FarmEventKind.INVALID]} invalid"
        ) + (f"; {skipped} of {slots} slots skipped (previous audit still running)" if clients else "")

    def snapshot(self) -> dict[str, Any]:
        """One JSON-ready picture of the cluster (`status --json`)."""
        now, wall = time.monotonic(), time.time()
        members = []
        for beat in self.live():
            members.append(
                {
                    "kind": str(beat.kind),
                    "instance": beat.instance_id,
                    "host": beat.host,
                    "address": beat.address,
                    "uptime_s": round(wall - beat.started_at, 1) if beat.started_at else None,
                    "last_heartbeat_s": round(now - self.seen[(beat.kind, beat.instance_id)], 1),
                    "status": _plain(beat.status),
                }
            )
        return {
            "slot": self.slot,
            "solutions": {str(kind): count for kind, count in self.solutions.items()},
            "solutions_per_hour": round(self.solutions_per_hour(), 1),
            "plot_jobs_queued": self.plot_jobs_queued,
            "members": members,
        }

    def render(self, title: str = "autonomys-farmer") -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self.solutions
        queued = "" if self.plot_jobs_queued is None else f" — {self.plot_jobs_queued} plot job(s) queued"
        table = Table(
            title=f"{title} — slot {self.slot} — solutions accepted {s[FarmEventKind.SOLUTION]}, "
            f"late {s[FarmEventKind.LATE]}, invalid {s[FarmEventKind.INVALID]} "
            f"({self.solutions_per_hour():.0f}/h){queued}"
        )
        for column in ("component", "instance", "host", "up", "status"):
            table.add_column(column)
        bars = Table.grid(padding=(0, 1))
        notes: list[str] = []
        wall = time.time()
        for beat in self.live():
            up = _duration(wall - beat.started_at) if beat.started_at else ""
            table.add_row(beat.kind, beat.instance_id[:8], beat.host, up, _figures(beat))
            notes += _start_up_notes(beat)
            if isinstance(beat.status, PlotClientStatus):
                client = beat.status
                notes.append(
                    f"plot client {beat.instance_id[:8]}: last slot's audit {client.audit_ms:.1f} ms over "
                    f"{client.audited} sectors; slots skipped: {client.skipped_audit_running} of {client.slots} "
                    f"(previous audit still running), {client.skipped_implausible} refused as implausible"
                )
                for farm in beat.status.farms:
                    bars.add_row(
                        f"farm {farm.farm_id[:8]}",
                        ProgressBar(total=farm.sectors, completed=farm.plotted, width=40),
                        f"{farm.plotted}/{farm.sectors} sectors plotted"
                        + (f", {farm.expiring} expiring" if farm.expiring else "")
                        + (f", audit {farm.audit_ms:.1f} ms" if farm.audit_ms else ""),
                    )
                for sector in beat.status.plotting:
                    bars.add_row(
                        f"  sector {sector.sector_index}",
                        ProgressBar(total=max(sector.total, 1), completed=sector.done, width=40),
                        f"{sector.stage} {sector.done}/{sector.total}{self._rate(sector)}",
                    )
        if self.archiving is not None:
            done, total, elapsed = self.archiving
            eta = f", ETA {_duration(elapsed / done * (total - done))}" if done else ""
            notes = [n for n in notes if not n.startswith("node: no archived segment")]
            notes.insert(0, f"node: archiving a segment, {done} of {total} records committed{eta}")
        return Group(table, bars, *notes, *self.events)

    def _rate(self, sector: SectorProgress) -> str:
        """Records/s and ETA of a sector being encoded, from its progress since the view first saw it."""
        key = (sector.farm_id, int(sector.sector_index))
        if sector.stage != PlotStage.ENCODING:
            self._encoding_since.pop(key, None)
            return ""
        now = time.monotonic()
        since, done_then = self._encoding_since.setdefault(key, (now, sector.done))
        if now - since < 1.0 or sector.done <= done_then:
            return ""
        rate = (sector.done - done_then) / (now - since)
        return f", {rate:.1f} records/s, ETA {_duration((sector.total - sector.done) / rate)}"


def _start_up_notes(beat: Heartbeat) -> list[str]:
    """What a fresh cluster is waiting for, said as a wait rather than shown as failures."""
    status = beat.status
    if isinstance(status, ControllerStatus) and status.segments == 0:
        return [
            "node: no archived segment yet (a new dev chain archives its genesis segment first: about a "
            "minute on 2 cores); plotting waits for it"
        ]
    if isinstance(status, CacheStatus) and not status.synced:
        capacity = f" of {status.capacity}" if status.capacity is not None else ""
        return [f"{beat.kind} {beat.instance_id[:8]}: syncing, {status.items}{capacity} items so far"]
    if isinstance(status, PlotServerStatus) and status.waiting and not status.plotted:
        return [f"plot server {beat.instance_id[:8]}: {status.waiting} job(s) put back until their pieces are cached"]
    return []


def event_line(event: FarmEvent) -> str:
    """One complete line per farm event: time, farm, what happened, where, and why when there is a why."""
    where = []
    if event.sector_index is not None:
        where.append(f"sector {event.sector_index}")
    if event.slot_number is not None:
        where.append(f"slot {event.slot_number}")
    text = f"{time.strftime('%H:%M:%S')} farm {event.farm_id[:8]} {event.kind}"
    text += f" ({', '.join(where)})" if where else ""
    return text + (f": {event.detail}" if event.detail else "")


def _figures(beat: Heartbeat) -> str:
    """A member's status in words that matter to an operator."""
    status = beat.status
    if isinstance(status, CacheStatus):
        capacity = f"/{status.capacity}" if status.capacity is not None else ""
        return f"{status.items}{capacity} items, {'synced' if status.synced else 'syncing'}"
    if isinstance(status, PlotServerStatus):
        hours = (time.time() - beat.started_at) / 3600 if beat.started_at else 0.0
        rate = f" ({status.plotted / hours:.1f}/h)" if hours > 0.01 else ""
        return (
            f"{status.backend} on {status.device}: {status.plotted} sectors plotted{rate}, {status.encoding} encoding, "
            f"{status.buffered} buffered, {status.records_per_s:.1f} records/s, {status.waiting} waiting, "
            f"{status.failed} failed"
        )
    if isinstance(status, ProofServerStatus):
        return (
            f"{status.backend} on {status.device}: {status.proved} proved, p50 {status.p50_ms:.0f} ms, "
            f"p99 {status.p99_ms:.0f} ms, {status.queued} queued, {status.failed} failed"
        )
    if isinstance(status, PlotClientStatus):
        return (
            f"{status.slots} slots, {status.wins} wins: {status.accepted} accepted, {status.late} late, "
            f"{status.invalid} invalid, {status.dropped} dropped; proof ~{status.proof_s:.1f}s"
        )
    return ", ".join(f"{k}={v}" for k, v in status_figures(status).items())


def _plain(status: object) -> Any:
    if status is None:
        return None
    return json.loads(json.dumps(dataclasses.asdict(status), default=str))  # type: ignore[call-overload]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


async def watch(servers: list[str], as_json: bool, auth: NatsAuth, interval: float = 1.0, settle_s: float = 6.0) -> int:
    """`cluster status`: the live view until ^C, or with `as_json` one snapshot once every member has
    had time to send a heartbeat."""
    bus = await Bus.connect(servers, "status", 10.0, auth)
    status = ClusterStatus()
    try:
        await status.attach(bus)
        if as_json:
            await asyncio.sleep(settle_s)
            await status.refresh(bus)
            print(json.dumps(status.snapshot(), indent=2))
            return 0
        from rich.live import Live

        with Live(status.render(), refresh_per_second=4) as live:
            while True:
                await asyncio.sleep(interval)
                await status.refresh(bus)
                live.update(status.render())
    finally:
        await bus.close()
