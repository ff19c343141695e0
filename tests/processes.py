"""Subprocesses the tests run for real: the dev node (archiving its genesis once per session)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from conftest import KZG_PARAMETERS

from autonomys_farmer.protocol import farmer_rpc as rpc
from autonomys_farmer.services.transport.jsonrpc import JsonRpcClient


class DevNodeProcess:
    def __init__(self, base_path: Path, port: int) -> None:
        self.base_path = base_path
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240.0) -> float:
        started = time.monotonic()
        log = open(self.base_path.parent / f"dev-node-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autonomys_farmer.cli", "dev-node", "--listen", f"127.0.0.1:{self.port}",
             "--base-path", str(self.base_path), "--kzg-parameters", str(KZG_PARAMETERS)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dev node exited with {self.proc.returncode}; see {log.name}")
            if asyncio.run(self._has_history()):
                return time.monotonic() - started
            time.sleep(0.5)
        raise TimeoutError("dev node did not archive its genesis segment in time")

    async def _has_history(self) -> bool:
        try:
            client = await JsonRpcClient.connect(self.url, timeout=2)
        except (OSError, TimeoutError):
            return False
        try:
            return (await client.call(rpc.SEGMENT_HEADERS, [[0]]))[0] is not None
        finally:
            await client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@contextlib.asynccontextmanager
async def nats_server(conf: Path) -> AsyncIterator[None]:
    """A lone nats-server on a config a test wrote (its log beside the config), stopped afterwards."""
    from autonomys_farmer.services.deploy.supervisord import nats_server_binary

    with (conf.parent / f"{conf.stem}.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-c", str(conf), stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield
    finally:
        process.terminate()
        await process.wait()
