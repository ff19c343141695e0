"""Is there a usable GPU here, and which: the checks `select_backend` makes before using the CUDA backend."""

from __future__ import annotations

import os


def unavailable_reason() -> str | None:
    """None when numba-cuda can run kernels on a GPU here, else a short reason."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 (the CUDA simulator is for tests, not plotting)"
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install 'autonomys-farmer[gpu]')"
    try:
        if not cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None and visible.strip() in ("", "-1"):
                return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
            return "no CUDA driver or GPU found"
        device = cuda.get_current_device()
    except Exception as e:  # the driver reports problems as assorted CudaSupportError/CudaAPIError
        return f"CUDA unavailable: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
    if device.compute_capability < (7, 0):
        return f"{device.name.decode() if isinstance(device.name, bytes) else device.name} is too old (sm_70+ needed)"
    return None


def device_name() -> str:
    from numba import cuda

    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    major, minor = device.compute_capability
    return f"{name} (sm_{major}{minor})"
