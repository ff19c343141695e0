"""`autonomys-farmer util supervisor-config CLUSTER.toml`: the files of every machine of a cluster, from
its one typed description (cluster/layout_toml.py), in the layout operators already deploy:
`/etc/supervisor/conf.d/autonomys-<component>.conf`, one plot server per GPU pinned with
`numactl -C <cores> -l` next to its GPU and given `CUDA_VISIBLE_DEVICES`, and in `/etc/autonomys/`
(0700) the nats-server config, role passwords and cluster secret (0600). The same renderer writes the
files `dev` runs under supervisord.

Files come out under OUT/<machine name>/etc/..., ready to be copied to each machine's root.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from autonomys_farmer.cluster.layout import ClusterLayout, LayoutError
from autonomys_farmer.cluster.layout_toml import parse_cluster
from autonomys_farmer.services.deploy.render import ClusterCredentials, File, render_machine, write_files


def render_cluster(layout: ClusterLayout, credentials: ClusterCredentials | None) -> dict[Path, File]:
    """Every file of every machine, keyed by `<machine>/<path on the machine>`."""
    return {
        Path(machine.name) / path.relative_to(path.anchor): file
        for machine in layout.machines
        for path, file in render_machine(layout, machine, credentials).items()
    }


def read_cluster(description: Path) -> ClusterLayout:
    """CLUSTER.toml parsed once; any error is one line naming the file and the key."""
    try:
        return parse_cluster(tomllib.loads(description.read_text()), description.parent)
    except (tomllib.TOMLDecodeError, LayoutError) as e:
        raise LayoutError(f"{description}: {e}") from None


def write_cluster_config(description: Path, out_dir: Path) -> list[Path]:
    """Render every machine's files, with fresh credentials, and write them (atomically) under out_dir."""
    return write_files(render_cluster(read_cluster(description), ClusterCredentials.generate()), out_dir)
