"""Chaos soak (not a test: minutes of faults, printed as figures for the README).

A one-machine cluster in the seed's shape, as `autonomys-farmer dev --nodes 3`
runs it under real supervisord (three node machines of dev node, controller and proof server on one chain, sharded and
full-piece caches, plot server, plot client, three routed NATS servers with per-role authorization),
plots its farm, then farms while random programs are SIGKILLed (autorestart brings them back) or
SIGSTOPped for a few seconds, each by the PID supervisord reports, or a whole node machine is killed at
once and kept stopped. After every fault the soak waits for farming to resume (a
solution accepted by a node) and records how long that took; it samples every program's memory; at the
end every plotted sector must read back whole (checksum and metadata).

    python bench/chaos_soak.py --minutes 10 [--seed 1] [--nodes 3] [--base-path DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from autonomys_farmer.cluster.messages import PlotClientStatus
from autonomys_farmer.protocol.hashes import blake3_hash
from autonomys_farmer.services.devnet.dev import DevLayout
from autonomys_farmer.services.storage.farm import Farm
from autonomys_farmer.services.tools.cluster_status import ClusterStatus
from autonomys_farmer.services.transport.nats_bus import Bus

SHARED_VICTIMS = (
    "plot-client", "plot-server", "sharded-cache", "full-piece-sharded-cache",
    "nats-server-0", "nats-server-1", "nats-server-2",
)  # fmt: skip
NODE_PROGRAMS = ("dev-node", "controller", "proof-server")
MACHINE = "node machine"
RECOVERY_BOUND_S = 240.0


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def wait_until(predicate, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    return None


def plotted(status: ClusterStatus) -> int:
    return sum(
        farm.plotted
        for beat in status.live()
        if isinstance(beat.status, PlotClientStatus)
        for farm in beat.status.farms
    )


async def soak(base: Path, minutes: float, seed: int, sectors: int, nodes: int) -> int:
    rng = random.Random(seed)
    layout = DevLayout(base, sectors=sectors, nats_servers=3, nodes=nodes)
    victims = [*SHARED_VICTIMS, *(layout.node_name(kind, n) for kind in NODE_PROGRAMS for n in range(nodes))]
    victims += [MACHINE] * nodes if nodes > 1 else []
    async with layout.supervisord() as supervisor:
        bus = await Bus.connect(layout.nats_urls, "chaos", auth=layout.nats_credentials())
        status = ClusterStatus()
        await status.attach(bus)
        peak: dict[str, float] = {}
        faults: Counter[str] = Counter()
        recoveries: list[tuple[str, float | None]] = []

        async def sample_memory() -> None:
            while True:
                for name, process in (await supervisor.processes()).items():
                    if process.pid:
                        peak[name] = max(peak.get(name, 0.0), rss_mib(process.pid))
                await asyncio.sleep(2.0)

        sampler = asyncio.create_task(sample_memory())
        try:
            ready = await wait_until(lambda: plotted(status) == sectors and status.accepted > 0, 900)
            if ready is None:
                print("the cluster never plotted its farm and farmed: no soak", file=sys.stderr)
                return 1
            print(f"farm plotted and farming after {ready:.0f}s; soaking for {minutes:g} min", flush=True)
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                victim = rng.choice(victims)
                fault = rng.choice(("SIGKILL", "SIGSTOP"))
                if victim == MACHINE:  # a whole node machine: its dev node, controller and proof server at once
                    node = rng.randrange(nodes)
                    victim, fault = f"node machine {node}", "SIGKILL"
                    machine = [layout.node_name(kind, node) for kind in NODE_PROGRAMS]
                faults[f"{fault} {victim}"] += 1
                before = status.accepted
                if victim.startswith(MACHINE):  # kept down until farming resumed without it
                    await supervisor.down(*machine)
                elif fault == "SIGKILL":
                    await supervisor.kill(victim)
                else:
                    pid = await supervisor.kill(victim, signal.SIGSTOP)
                    await asyncio.sleep(rng.uniform(2.0, 10.0))
                    if pid:
                        os.kill(pid, signal.SIGCONT)
                took = await wait_until(lambda before=before: status.accepted > before, RECOVERY_BOUND_S)
                if victim.startswith(MACHINE):
                    await supervisor.up(*machine)
                recoveries.append((f"{fault} {victim}", took))
                outcome = f"resumed after {took:.0f}s" if took is not None else "NOT resumed"
                print(f"{fault} {victim}: farming {outcome}", flush=True)
                await asyncio.sleep(rng.uniform(5.0, 20.0))
        finally:
            sampler.cancel()
            await bus.close()
    farm = Farm(base / "farm", sectors, 8, _genesis(base))
    intact = 0
    for index in farm.plotted_indices():
        data = farm.read_sector(int(index))
        intact += blake3_hash(data[:-32]) == data[-32:]
    farm.close()
    worst = max((t for _, t in recoveries if t is not None), default=0.0)
    unresolved = [name for name, t in recoveries if t is None]
    print(f"\nminutes {minutes:g}, faults {sum(faults.values())}: " + ", ".join(f"{k} x{v}" for k, v in faults.items()))
    print(f"worst recovery {worst:.0f}s; not resumed within {RECOVERY_BOUND_S:.0f}s: {unresolved or 'none'}")
    print(f"sectors intact after the soak: {intact}/{sectors}")
    restarts = {name: supervisor.restarts(name) for name in supervisor.program_names()}
    print("restarted by supervisord: " + ", ".join(f"{name} x{n}" for name, n in restarts.items() if n))
    print("peak memory (MiB): " + ", ".join(f"{name} {mib:.0f}" for name, mib in sorted(peak.items())))
    return 0 if not unresolved and intact == sectors else 1


def _genesis(base: Path) -> bytes:
    import json

    return bytes.fromhex(json.loads((base / "farm" / "single_disk_farm.json").read_text())["v0"]["genesisHash"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sectors", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=3, help="node machines (dev node, controller, proof server)")
    parser.add_argument("--base-path", type=Path, default=None, help="default: a fresh temporary directory")
    args = parser.parse_args()
    base = args.base_path or Path(tempfile.mkdtemp(prefix="autonomys-chaos-"))
    sys.exit(asyncio.run(soak(base, args.minutes, args.seed, args.sectors, args.nodes)))


if __name__ == "__main__":
    main()
