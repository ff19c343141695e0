"""`util supervisor-config`: CLUSTER.toml -> supervisor program files and nats-server configs in the
seed's deployment layout, with numactl pinning from the GPUs' NUMA affinity."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from autonomys_farmer.cluster.layout import (
    LayoutError,
    format_cpu_list,
    gpu_affinity_from_topology,
    parse_cpu_list,
    plot_server_cores,
)
from autonomys_farmer.cluster.layout_toml import parse_cluster
from autonomys_farmer.services.tools.supervisor_config import render_cluster

# `nvidia-smi topo -m` of a 4-GPU plotter with two NUMA nodes (tabs as nvidia-smi prints them).
TOPOLOGY = """\
\tGPU0\tGPU1\tGPU2\tGPU3\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID
GPU0\t X \tNV18\tSYS\tSYS\tNODE\t0-47,96-143\t0\t\tN/A
GPU1\tNV18\t X \tSYS\tSYS\tNODE\t0-47,96-143\t0\t\tN/A
GPU2\tSYS\tSYS\t X \tNV18\tSYS\t48-95,144-191\t1\t\tN/A
GPU3\tSYS\tSYS\tNV18\t X \tSYS\t48-95,144-191\t1\t\tN/A
NIC0\tNODE\tNODE\tSYS\tSYS\t X \t\t\t\t

Legend:

  X    = Self
"""

CLUSTER = """
[cluster]
farmer = "/root/autonomys/autonomys-farmer"
nats_server = "/usr/local/bin/nats-server"

[[machines]]
name = "node-1"
host = "192.168.1.1"
nats_server = true
controller = { node_rpc_url = "ws://10.30.1.2:9944" }
proof_server = { gpu = 0 }

[[machines]]
name = "node-2"
host = "192.168.1.2"
nats_server = true
controller = {}

[[machines]]
name = "node-3"
host = "192.168.1.3"
nats_server = true

[[machines]]
name = "plotter-1"
host = "192.168.1.4"
gpu_topology = "topo.txt"
sharded_cache = { path = "/var/autonomys-sharded-cache", size = "200GiB" }
full_piece_cache = { path = "/var/autonomys-full-piece" }
plot_server = { gpus = 4, base_path = "/var/plot-server", listen_port = 9966, cores = 32, gpu_concurrency = 2 }

[[machines]]
name = "storage-1"
host = "192.168.1.6"
[machines.plot_client]
reward_address = "stBRS8V"
farms = ["path=/mnt/nvme0n1/,sectors=8000", "path=/mnt/nvme0n2/,sectors=8000"]
"""

NATS = (
    "cluster --nats-server nats://192.168.1.1:4222 --nats-server nats://192.168.1.2:4222 "
    "--nats-server nats://192.168.1.3:4222"
)


def test_cpu_lists_and_gpu_affinity() -> None:
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpu_list([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    with pytest.raises(LayoutError, match="invalid CPU list 'all'"):
        parse_cpu_list("all")
    affinity = gpu_affinity_from_topology(TOPOLOGY)
    assert affinity == ["0-47,96-143", "0-47,96-143", "48-95,144-191", "48-95,144-191"]
    # GPUs on one NUMA node split its CPUs in order, each taking the first 32 of its share.
    cores = [format_cpu_list(c) for c in plot_server_cores(affinity, 4, 32)]
    assert cores == ["0-31", "96-127", "48-79", "144-175"]
    assert [format_cpu_list(c) for c in plot_server_cores(affinity, 2, None)] == ["0-47", "96-143"]
    with pytest.raises(LayoutError, match="fewer than the 64 wanted"):
        plot_server_cores(affinity, 4, 64)


def test_render_the_seed_layout(tmp_path: Path) -> None:
    (tmp_path / "topo.txt").write_text(TOPOLOGY)
    files = {
        path: file.text for path, file in render_cluster(parse_cluster(tomllib.loads(CLUSTER), tmp_path), None).items()
    }
    assert sorted(str(p) for p in files if p.parts[0] == "plotter-1") == [
        "plotter-1/etc/supervisor/conf.d/autonomys-full-piece.conf",
        "plotter-1/etc/supervisor/conf.d/autonomys-plot-server.conf",
        "plotter-1/etc/supervisor/conf.d/autonomys-sharded-cache.conf",
    ]
    plot = files[Path("plotter-1/etc/supervisor/conf.d/autonomys-plot-server.conf")]
    assert "[group:autonomys-plot-server]\nprograms=autonomys-plot-server-0,autonomys-plot-server-1," in plot
    assert (
        "[program:autonomys-plot-server-1]\n"
        f"command=numactl -C 96-127 -l /root/autonomys/autonomys-farmer {NATS} plot-server --priority-cache "
        "--listen-port 9967 /var/plot-server/base-path-1\n"
        "autorestart=true\nuser=root\n"
        'environment=CUDA_VISIBLE_DEVICES="1",GPU_CONCURRENCY="2"\n'
        "redirect_stderr=true\nstdout_logfile_maxbytes=100MB\nstdout_logfile_backups=2\n"
        "stdout_logfile=/var/log/autonomys-plotter-1.log\n"
    ) in plot
    controller = files[Path("node-1/etc/supervisor/conf.d/autonomys-controller.conf")]
    assert f"command=/root/autonomys/autonomys-farmer {NATS} controller --tmp --node-rpc-url ws://10.30.1.2:9944\n" in (
        controller
    )
    assert (
        "--node-rpc-url ws://192.168.1.2:9944" in files[Path("node-2/etc/supervisor/conf.d/autonomys-controller.conf")]
    )
    proof = files[Path("node-1/etc/supervisor/conf.d/autonomys-proof-server.conf")]
    assert f"{NATS} proof-server\n" in proof and 'environment=CUDA_VISIBLE_DEVICES="0"' in proof
    cache = files[Path("plotter-1/etc/supervisor/conf.d/autonomys-sharded-cache.conf")]
    assert f"{NATS} sharded-cache path=/var/autonomys-sharded-cache,size=200GiB\n" in cache
    client = files[Path("storage-1/etc/supervisor/conf.d/autonomys-plot-client.conf")]
    assert (
        f"{NATS} plot-client --reward-address stBRS8V path=/mnt/nvme0n1/,sectors=8000 path=/mnt/nvme0n2/,sectors=8000\n"
        in client
    )
    nats = files[Path("node-2/etc/autonomys/nats-server.conf")]
    assert "listen: 0.0.0.0:4222" in nats and "max_payload: 4MB" in nats and "jetstream" in nats
    assert "routes: [nats-route://192.168.1.1:4248, nats-route://192.168.1.3:4248]" in nats
    assert (
        "command=/usr/local/bin/nats-server -c /etc/autonomys/nats-server.conf"
        in files[Path("node-2/etc/supervisor/conf.d/nats-server.conf")]
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.replace('size = "200GiB"', 'size = "lots"'), "invalid size 'lots'"),
        (lambda c: c.replace('farms = ["path=/mnt/nvme0n1/,sectors=8000", ', "farms = ["), None),
        (lambda c: c.replace('sectors=8000"]', 'sector=8000"]'), "unknown option 'sector'"),
        (lambda c: c.replace("nats_server = true", "nats_server = false"), "no machine runs a nats-server"),
        (lambda c: c.replace('name = "node-2"', 'name = "node-1"'), "machine names must be unique"),
        (lambda c: c.replace("gpus = 4", "gpus = 6"), "6 GPU\\(s\\) wanted but the affinity lists only 4"),
        (
            lambda c: c.replace('reward_address = "stBRS8V"\n', ""),
            "plot_client.reward_address: required, expected a string",
        ),
        (lambda c: c.replace("proof_server = ", "proof_servers = "), "unknown key\\(s\\) proof_servers"),
        (
            lambda c: c.replace('nats_server = "/usr', 'nats_port = "x"\nnats_server = "/usr'),
            "cluster.nats_port: expected an integer, got 'x'",
        ),
        (lambda c: c.replace("gpus = 4", 'gpus = "4"'), "plot_server.gpus: expected an integer, got '4'"),
        (lambda c: c.replace("proof_server = { gpu = 0 }", "proof_server = 0"), "proof_server: expected a table"),
        (lambda c: c.replace('host = "192.168.1.6"', "host = 6"), "machine storage-1|machines\\[4\\]"),
    ],
)
def test_bad_descriptions_name_the_bad_value(tmp_path: Path, edit, message) -> None:
    (tmp_path / "topo.txt").write_text(TOPOLOGY)
    config = tomllib.loads(edit(CLUSTER))
    if message is None:  # still valid: one farm is fine
        assert render_cluster(parse_cluster(config, tmp_path), None)
        return
    with pytest.raises(LayoutError, match=message):
        parse_cluster(config, tmp_path)


def test_cli_writes_every_machine(tmp_path: Path) -> None:
    (tmp_path / "topo.txt").write_text(TOPOLOGY)
    (tmp_path / "CLUSTER.toml").write_text(CLUSTER)
    done = subprocess.run(
        [sys.executable, "-m", "autonomys_farmer.cli", "util", "supervisor-config", "CLUSTER.toml", "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out/plotter-1/etc/supervisor/conf.d/autonomys-plot-server.conf").exists()
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(done.stdout.splitlines()) == len(written)
    # Secrets by default: one NATS user per role with its permissions, each program with its role's
    # password file and the cluster secret, every secret readable by its owner only.
    nats_conf = (tmp_path / "out/node-1/etc/autonomys/nats-server.conf").read_text()
    assert "accounts {" in nats_conf and '"user": "plot-client"' in nats_conf
    plot_server = (tmp_path / "out/plotter-1/etc/supervisor/conf.d/autonomys-plot-server.conf").read_text()
    assert "--nats-user plot-server --nats-password-file /etc/autonomys/nats-plot-server.password" in plot_server
    assert "--cluster-secret-file /etc/autonomys/cluster-secret" in plot_server
    password = tmp_path / "out/plotter-1/etc/autonomys/nats-plot-server.password"
    assert password.read_text().strip() in nats_conf and password.stat().st_mode & 0o077 == 0
    assert not (tmp_path / "out/plotter-1/etc/autonomys/nats-controller.password").exists()  # not its role
    operators = {p.parts[-4] for p in (tmp_path / "out").rglob("nats-operator.password")}
    assert operators == {p.parts[-4] for p in (tmp_path / "out").glob("*/etc/autonomys/nats-server.conf")}
    # Every file holding a password or the secret is its owner's only, in a directory only its owner enters.
    secret_files = list((tmp_path / "out").glob("*/etc/autonomys/*"))
    assert len(secret_files) > 10 and all(path.stat().st_mode & 0o777 == 0o600 for path in secret_files)
    assert all(path.parent.stat().st_mode & 0o777 == 0o700 for path in secret_files)
    assert all(password not in path.read_text() for path in written if path not in secret_files
               for password in (nats_conf.split('"password": "')[1][:64],))  # fmt: skip
    (tmp_path / "CLUSTER.toml").write_text("[[machines]]\nname = 'x'\n")
    bad = subprocess.run(
        [sys.executable, "-m", "autonomys_farmer.cli", "util", "supervisor-config", "CLUSTER.toml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "machines[0] needs a name and a host" in bad.stderr


def test_a_layout_runs_under_real_supervisord(tmp_path: Path) -> None:
    """`dev`'s way of running a layout: real supervisord on the rendered files. A program SIGKILLed by
    the PID supervisord reports comes back as a new process; a lost one stays down until brought up;
    supervisorctl works from outside; a second supervisord on the same base path is refused in one line;
    stopping leaves nothing running."""
    import asyncio
    import os

    from autonomys_farmer.services.deploy.supervisord import SupervisordError
    from autonomys_farmer.services.devnet.dev import DevLayout

    layout = DevLayout(tmp_path / "dev", nats_servers=3)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    async def run() -> list[int]:
        async with layout.supervisord(layout.nats_programs()) as supervisor:
            conf_d = sorted(p.name for p in layout.settings.conf_dir.iterdir())
            assert conf_d == ["nats-server-0.conf", "nats-server-1.conf", "nats-server-2.conf"]
            first = await supervisor.kill("nats-server-1")
            for _ in range(100):
                pid = await supervisor.pid("nats-server-1")
                if pid not in (0, first):
                    break
                await asyncio.sleep(0.1)
            assert pid not in (0, first) and supervisor.restarts("nats-server-1") == 1
            await supervisor.down("nats-server-2")
            await asyncio.sleep(1.5)
            assert (await supervisor.processes())["nats-server-2"].state == "STOPPED"
            ctl = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "supervisorctl"), "-c", str(supervisor.conf), "status",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out = (await ctl.communicate())[0].decode()
            assert "nats-server-0" in out and "RUNNING" in out and "nats-server-2" in out and "STOPPED" in out, out
            await supervisor.up("nats-server-2")
            with pytest.raises(SupervisordError, match=r"a supervisord already runs on .*shutdown"):
                await layout.supervisord(layout.nats_programs()).start()
            return [info.pid for info in (await supervisor.processes()).values()] + [supervisor.process.pid]

    pids = asyncio.run(run())
    assert all(pids) and not any(alive(pid) for pid in pids)
