from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autonomys_farmer.protocol.kzg import Kzg
from autonomys_farmer.services.files import load_kzg

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KZG_PARAMETERS = SHARED / "kzg" / "eth-public-parameters.bin"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where numba-cuda finds a usable GPU."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from autonomys_farmer.backends.cuda.device import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {reason}"))


@pytest.fixture(scope="session")
def kzg() -> Kzg:
    if not KZG_PARAMETERS.exists():
        pytest.fail(f"KZG parameters not found at {KZG_PARAMETERS} (the shared/ folder beside the checkout)")
    return load_kzg(KZG_PARAMETERS)


@pytest.fixture(scope="session")
def compute():
    """The CPU backend: what every protocol function takes when CI has no GPU."""
    from autonomys_farmer.backends.cpu.backend import CpuBackend

    return CpuBackend()


@pytest.fixture(scope="session")
def emulated():
    """The GPU pipelines' device emulated on the CPU (test tier T1); one per session, so its compiled
    launch wrappers are shared by every test that uses it."""
    from autonomys_farmer.backends.cpu.emulation import EmulatedDevice

    return EmulatedDevice()


@pytest.fixture(scope="session")
def s35_table(compute):
    from vectors import S35

    return compute.proof_table(S35)


@pytest.fixture(scope="session")
def archived_chain(tmp_path_factory) -> Path:
    """A dev chain directory with its genesis segment archived (a minute of CPU), made once per session."""
    from processes import DevNodeProcess

    from autonomys_farmer.services.deploy.supervisord import free_port

    base = tmp_path_factory.mktemp("archived-chain") / "chain"
    node = DevNodeProcess(base, free_port())
    node.start()
    node.stop()
    return base
