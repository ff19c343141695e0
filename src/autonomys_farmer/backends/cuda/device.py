"""Is there a usable GPU here, and which: the checks `select_backend` makes before using the CUDA backend.

The driver and the toolkit numba-cuda compiles with must fit together. A CUDA 13 toolkit (the `cuda13`
extra) needs a 580-series driver; the seed's machines run driver ≥ 525.60.13 (CUDA 12.0) or CUDA 12.4,
where the `cuda12` extra is needed. Within one major version a newer toolkit runs on an older driver
through minor-version compatibility: numba-cuda then links with nvJitLink, which turns the toolkit's
output into device code the older driver loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

Version = tuple[int, int]

OLDEST_DRIVER_CUDA: Version = (12, 0)  # driver ≥ 525.60.13; numba-cuda supports CUDA 12 and 13 toolkits
OLDEST_TOOLKIT_MAJOR = 12
DRIVER_SERIES = {12: "525.60.13", 13: "580"}  # the oldest driver of each CUDA major version


@dataclass(frozen=True)
class CudaVersions:
    """What decides whether compiled kernels can load: the CUDA version the driver supports
    (cuDriverGetVersion), the toolkit numba-cuda compiles with (NVRTC), and nvJitLink, the linker that
    gives minor-version compatibility (None: not installed)."""

    driver: Version | None
    toolkit: Version | None
    nvjitlink: Version | None


def extra_for(driver: Version) -> str:
    """The package extra whose toolkit this driver runs."""
    return "cuda13" if driver[0] >= 13 else "cuda12"


def _v(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def toolkit_mismatch(versions: CudaVersions) -> str | None:
    """None when kernels compiled with the toolkit load on the driver, else why not, naming the
    install that fixes it. Pure: the versions are read by `cuda_versions`."""
    driver, toolkit, linker = versions.driver, versions.toolkit, versions.nvjitlink
    if driver is None:
        return "no CUDA driver found"
    if driver < OLDEST_DRIVER_CUDA:
        return f"the driver supports CUDA {_v(driver)}; the GPU kernels need a CUDA 12 driver (≥ 525.60.13) or newer"
    install = f"pip install 'autonomys-farmer[{extra_for(driver)}]'"
    if toolkit is None:
        return f"numba-cuda found no CUDA toolkit: {install}"
    if toolkit[0] < OLDEST_TOOLKIT_MAJOR:
        return f"the CUDA {_v(toolkit)} toolkit is too old for numba-cuda: {install}"
    if toolkit[0] > driver[0]:
        return (
            f"the CUDA {_v(toolkit)} toolkit needs a driver of the {DRIVER_SERIES.get(toolkit[0], 'newer')} series "
            f"or newer, and this driver supports CUDA {_v(driver)}: {install}"
        )
    if toolkit[0] == driver[0] and toolkit > driver:
        if linker is None or linker[0] != toolkit[0] or linker < toolkit:
            found = f"nvJitLink {_v(linker)}" if linker else "no nvJitLink"
            return (
                f"the CUDA {_v(toolkit)} toolkit is newer than the driver's CUDA {_v(driver)}, and minor-version "
                f"compatibility needs nvJitLink {toolkit[0]}.x ≥ {_v(toolkit)} ({found} here): {install}"
            )
    return None


def cuda_versions() -> CudaVersions:
    """The versions on this machine (numba-cuda importable and its driver initialised)."""
    from numba.cuda.cudadrv import driver as cuda_driver

    def read(get: object) -> Version | None:
        try:
            major, minor = get()  # type: ignore[operator]
            return int(major), int(minor)
        except Exception:  # a missing library is reported as None: toolkit_mismatch names the fix
            return None

    def nvjitlink() -> Version | None:
        if not cuda_driver._have_nvjitlink():  # type: ignore[attr-defined]  # numba-cuda: nvJitLink ≥ 12.3 found
            return None
        from cuda.bindings import nvjitlink as linker

        return read(linker.version)

    def toolkit() -> Version | None:
        from numba.cuda.cudadrv import runtime

        return read(runtime.get_version)

    return CudaVersions(read(cuda_driver.driver.get_version), toolkit(), nvjitlink())


def unavailable_reason() -> str | None:
    """None when numba-cuda can run kernels on a GPU here, else a short reason."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1 (the CUDA simulator is for tests, not plotting)"
    try:
        from numba import cuda
    except ImportError:
        return "numba-cuda is not installed (pip install 'autonomys-farmer[cuda12]' or '[cuda13]')"
    try:
        if not cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None and visible.strip() in ("", "-1"):
                return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
            return "no CUDA driver or GPU found"
        mismatch = toolkit_mismatch(cuda_versions())
        if mismatch is not None:
            return mismatch
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


def free_memory() -> int:
    """Bytes of memory free on the current GPU."""
    from numba import cuda

    free, _total = cuda.current_context().get_memory_info()
    return int(free)
