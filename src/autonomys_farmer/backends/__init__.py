"""Compute backends: implementations of the protocol's compute contract (`protocol.compute.Compute`).

`cpu` compiles the one kernel source (backends/kernels) with numba for every core; `cuda` compiles the
same source with numba-cuda for one GPU (the one CUDA_VISIBLE_DEVICES leaves visible). Services pick one
with `select_backend` and pass it to the protocol functions they call.
"""

from __future__ import annotations

import logging

from autonomys_farmer.protocol.compute import Compute

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "cpu", "cuda")


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here (the message says why)."""


def select_backend(choice: str = "auto", gpu_concurrency: int | None = None) -> Compute:
    """`cpu`, `cuda`, or `auto`: cuda when numba-cuda finds a usable GPU whose driver runs the installed
    toolkit, else cpu (logged either way, with the reason).

    gpu_concurrency (GPU_CONCURRENCY) is how many records each of the GPU's two streams keeps in
    flight: more throughput for more GPU memory; None chooses it from the free memory (logged)."""
    if choice not in BACKEND_CHOICES:
        raise BackendUnavailableError(f"unknown compute backend {choice!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if choice == "cpu":
        return _cpu()
    from autonomys_farmer.backends.cuda.device import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        from autonomys_farmer.backends.cuda.backend import CudaBackend

        gpu = CudaBackend(gpu_concurrency)
        log.info("compute backend: cuda on %s", gpu.device)
        return gpu
    if choice == "cuda":
        raise BackendUnavailableError(f"--backend cuda: {reason}")
    cpu = _cpu()
    log.info("compute backend: cpu on %s (no usable GPU: %s)", cpu.device, reason)
    return cpu


def _cpu() -> Compute:
    from autonomys_farmer.backends.cpu.backend import CpuBackend

    return CpuBackend()
