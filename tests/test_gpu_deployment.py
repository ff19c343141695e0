"""GPU deployment without a GPU: which driver runs which toolkit, GPU_CONCURRENCY's automatic choice,
the `benchmark gpu` self-check and its exit status, and plot and proof servers that reach NATS before
they compile."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from conftest import KZG_PARAMETERS

from autonomys_farmer import cli
from autonomys_farmer.backends.cuda.backend import AUTO_MAX_PER_STREAM, STREAMS, auto_concurrency
from autonomys_farmer.backends.cuda.device import CudaVersions, toolkit_mismatch
from autonomys_farmer.backends.cuda.pipeline import encode_bytes_per_record
from autonomys_farmer.protocol.compute import EncodedRecords
from autonomys_farmer.services.components import component, plot_server, proof_server
from autonomys_farmer.services.transport.nats_bus import NatsConfigError


@pytest.mark.parametrize(
    ("driver", "toolkit", "nvjitlink", "verdict"),
    [
        ((12, 0), (12, 9), (12, 9), None),  # the seed's 525.60.13 driver: minor-version compatibility
        ((12, 4), (12, 4), None, None),  # same version: no linker needed
        ((12, 8), (12, 2), None, None),  # an older toolkit always runs
        ((13, 0), (12, 9), (12, 9), None),  # a newer driver runs an older major version
        ((13, 1), (13, 5), (13, 5), None),
        ((12, 0), (12, 9), None, "cuda12"),  # newer toolkit, nothing to link it for this driver
        ((12, 0), (12, 9), (12, 4), "cuda12"),  # a linker older than the toolkit cannot read its output
        ((12, 4), (13, 5), (13, 5), "cuda12"),  # the CUDA 13 toolkit on a CUDA 12 driver
        ((13, 0), None, None, "cuda13"),  # no toolkit installed
        ((12, 4), None, None, "cuda12"),
        ((11, 8), (12, 9), (12, 9), "525.60.13"),  # a driver too old for any supported toolkit
        (None, None, None, "no CUDA driver"),
    ],
)
def test_driver_and_toolkit_decision(driver, toolkit, nvjitlink, verdict):
    reason = toolkit_mismatch(CudaVersions(driver, toolkit, nvjitlink))
    if verdict is None:
        assert reason is None
    else:
        assert reason is not None and verdict in reason and "\n" not in reason
        if verdict.startswith("cuda"):
            assert f"pip install 'autonomys-farmer[{verdict}]'" in reason


def test_gpu_concurrency_from_free_memory():
    per_record = encode_bytes_per_record()
    assert 100 * 2**20 < per_record < 256 * 2**20  # the design's "about 180 MB" per record in flight
    assert encode_bytes_per_record(k=12) < per_record / 10  # tables shrink with k; the record buffers stay
    assert auto_concurrency(80 * 2**30, per_record) == AUTO_MAX_PER_STREAM  # an idle H100
    assert auto_concurrency(2 * 2**30, per_record) == (2**30) // (STREAMS * per_record)  # half the free memory
    assert auto_concurrency(0, per_record) == 1  # always one record, even when memory looks short


class Faulty:
    """The CPU backend with one flipped bit in every encoded record: what a broken GPU would give."""

    name = "faulty"

    def __init__(self, cpu: object) -> None:
        self.cpu = cpu

    def __getattr__(self, name: str) -> object:
        return getattr(self.cpu, name)

    def encode_records(self, seeds, records):
        encoded = self.cpu.encode_records(seeds, records)
        chunks = encoded.chunks.copy()
        chunks[:, 0, 31] ^= 1
        return EncodedRecords(chunks, encoded.encoded)


def run_benchmark(capsys, *extra: str) -> tuple[int, str]:
    argv = ["benchmark", "gpu", "--records", "1", "--proofs", "1", "--pieces", "2"]
    status = cli.main([*argv, "--kzg-parameters", str(KZG_PARAMETERS), *extra])
    return status, capsys.readouterr().out


def test_benchmark_gpu_on_the_cpu_backend(capsys):
    status, out = run_benchmark(capsys, "--backend", "cpu", "--json")
    report = json.loads(out)
    assert status == 0 and report["identical"] and report["checks"] == []  # the CPU is the reference itself
    figures = {figure["what"]: figure for figure in report["figures"]}
    assert figures["records encoded"]["value"] > 0 and figures["records encoded"]["target"] > 0
    assert 0 < figures["proving one win"]["value"] < 60_000 and figures["proving one win"]["target"] == 1300
    assert figures["piece verification"]["value"] > 0 and figures["MSM of 32768 points"]["value"] > 0
    assert figures["GPU memory per record in flight"]["value"] is None  # no GPU: not measured, not guessed


def test_benchmark_gpu_exits_non_zero_on_a_difference(capsys, monkeypatch, compute):
    monkeypatch.setattr(cli, "_compute", lambda choice: Faulty(compute))
    status, out = run_benchmark(capsys)
    assert status == 1
    lines = [line.strip().rsplit(maxsplit=1) for line in out.splitlines() if line.endswith(("identical", "DIFFERS"))]
    verdicts = {what.strip(): verdict for what, verdict in lines}
    assert verdicts["1 encoded records"] == "DIFFERS" and verdicts["a plotted 2-piece sector"] == "DIFFERS"
    assert verdicts["a proof (solution)"] == "identical" and verdicts["MSM of 32768 points"] == "identical"
    assert "figures:" not in out and "do not plot or prove with it" in out


class StopError(Exception):
    """What the fake bus raises once the server has gone past its warm-up."""


@pytest.mark.parametrize("kind", ["proof-server", "plot-server"])
def test_servers_reach_nats_before_compiling(kind, monkeypatch, tmp_path, kzg):
    events: list[str] = []

    class Bus:
        async def serve(self, *args, **kwargs):
            events.append("serve")
            raise StopError

        async def await_work_queue(self, *args):
            events.append("serve")
            raise StopError

        async def close(self):
            pass

    async def connect(servers, name, reachable=True, **options):
        events.append("connect")
        if not reachable:
            raise NatsConfigError("no NATS server reachable at nats://127.0.0.1:1")
        return Bus()

    compute = SimpleNamespace(name="cpu", device="test", batch_records=1, warm_up=lambda: events.append("compile"))
    monkeypatch.setattr(proof_server, "warm_up_proving", lambda compute, kzg: events.append("compile"))
    if kind == "proof-server":
        server = proof_server.ProofServer(["nats://127.0.0.1:1"], compute, kzg)
    else:
        server = plot_server.PlotServer(["nats://127.0.0.1:1"], tmp_path, 0, compute, kzg)

    monkeypatch.setattr(component.Bus, "connect", lambda *a, **k: connect(*a, **k, reachable=False))
    with pytest.raises(RuntimeError, match="no NATS server reachable"):
        asyncio.run(server.run())
    assert events == ["connect"]  # the trouble is named before any compilation

    events.clear()
    monkeypatch.setattr(component.Bus, "connect", lambda *a, **k: connect(*a, **k))
    with pytest.raises(RuntimeError):
        asyncio.run(server.run())
    assert events == ["connect", "compile", "serve"]  # and work is taken only once compiled
