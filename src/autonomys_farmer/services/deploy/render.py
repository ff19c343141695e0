"""A ClusterLayout rendered to the files each machine runs it from: supervisor program files, nats-server
configs, the role passwords and the cluster secret, and for `dev` supervisord's own config. `util
supervisor-config` writes them for an operator's rack, `dev` writes them in its base path and runs
supervisord on them: one renderer, so what `dev` runs is what a rack runs."""

from __future__ import annotations

import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from autonomys_farmer.cluster.components import GPU_CONCURRENCY_ENV, ClusterOptions, ComponentOptions, component_argv
from autonomys_farmer.cluster.layout import ClusterLayout, Machine, NatsServer, Program, Settings, format_cpu_list
from autonomys_farmer.cluster.roles import OPERATOR, ROLES, nats_authorization
from autonomys_farmer.services.files import write_atomically, write_secret

NATS_MAX_PAYLOAD = "4MB"  # a proving request carries a record and its sector's metadata


@dataclass(frozen=True)
class ClusterCredentials:
    """The secrets a cluster's files carry: a NATS password per role and the bulk TCP cluster secret."""

    passwords: dict[str, str]
    secret: str

    @classmethod
    def generate(cls) -> ClusterCredentials:
        return cls({role: secrets.token_hex(32) for role in ROLES}, secrets.token_hex(32))

    @classmethod
    def kept_in(cls, settings: Settings) -> ClusterCredentials:
        """Those already written under the settings' secrets directory (a restarted `dev` keeps its
        cluster's passwords), any missing one made anew."""
        fresh = cls.generate()

        def read(path: Path, new: str) -> str:
            return path.read_text().strip() if path.exists() else new

        passwords = {role: read(password_path(settings, role), fresh.passwords[role]) for role in ROLES}
        return cls(passwords, read(secret_path(settings), fresh.secret))


@dataclass(frozen=True)
class File:
    text: str
    secret: bool = False  # holds a password or the cluster secret: 0600 in a 0700 directory


def password_path(settings: Settings, role: str) -> Path:
    return settings.secrets_dir / f"nats-{role}.password"


def secret_path(settings: Settings) -> Path:
    return settings.secrets_dir / "cluster-secret"


def nats_conf_path(settings: Settings, program: Program) -> Path:
    return settings.secrets_dir / f"{program.name}.conf"  # it holds every role's password


def cluster_options(layout: ClusterLayout, machine: Machine, program: Program, authenticated: bool) -> ClusterOptions:
    """The `cluster` options the program runs with: every NATS server, and when `authenticated` its
    role's login and the cluster secret as files."""
    settings, role = layout.settings, program.role
    return ClusterOptions(
        nats_servers=layout.nats_urls,
        kzg_parameters=settings.kzg_parameters,
        prometheus_listen_on=program.metrics,
        backend=settings.backend,
        advertise_host=machine.advertise_host,
        nats_user=role if authenticated else None,
        nats_password_file=password_path(settings, role) if authenticated and role else None,
        cluster_secret_file=secret_path(settings) if authenticated else None,
    )


def program_argv(layout: ClusterLayout, machine: Machine, program: Program, authenticated: bool) -> list[str]:
    """The program's command line, pinned to its GPU's CPUs when they are known."""
    settings, runs = layout.settings, program.runs
    if isinstance(runs, NatsServer):
        return [settings.nats_server, "-c", str(nats_conf_path(settings, program))]
    pin = ["numactl", "-C", format_cpu_list(program.gpu.cpus), "-l"] if program.gpu and program.gpu.cpus else []
    if isinstance(runs, ComponentOptions):
        options = cluster_options(layout, machine, program, authenticated)
        return [*pin, *settings.farmer, *component_argv(options, runs)]
    return [*pin, *settings.farmer, "dev-node", *runs.to_argv()]


def program_environment(settings: Settings, program: Program) -> tuple[tuple[str, str], ...]:
    environment = list(settings.environment)
    if program.gpu is not None:
        environment.append(("CUDA_VISIBLE_DEVICES", str(program.gpu.index)))
    if program.gpu_concurrency is not None:
        environment.append((GPU_CONCURRENCY_ENV, str(program.gpu_concurrency)))
    return tuple(environment)


def log_path(settings: Settings, program: Program) -> Path:
    return settings.log_dir / f"{program.log_name or program.name}.log"


def render_program(layout: ClusterLayout, machine: Machine, program: Program, authenticated: bool) -> str:
    settings = layout.settings
    command = shlex.join(program_argv(layout, machine, program, authenticated))
    lines = [f"[program:{program.name}]", f"command={_literal(command)}"]
    lines += ["autorestart=true"] + ([] if program.autostart else ["autostart=false"])
    lines += [f"user={settings.user}"] if settings.user else []
    if environment := program_environment(settings, program):
        lines.append("environment=" + ",".join(f'{key}="{_literal(value)}"' for key, value in environment))
    lines += [
        "redirect_stderr=true",
        "stdout_logfile_maxbytes=100MB",
        "stdout_logfile_backups=2",
        f"stdout_logfile={_literal(str(log_path(settings, program)))}",
    ]
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    """A value supervisord takes as written: it expands `%(name)s` in these, so a `%` is doubled."""
    return text.replace("%", "%%")


def nats_server_config(layout: ClusterLayout, server: NatsServer, passwords: dict[str, str] | None) -> str:
    """nats-server config: JetStream on, max_payload big enough for a proving request, routes to the
    other servers when there are several, and with `passwords` one least-privilege user per role."""
    lines = [
        f"server_name: {server.name}",
        f"listen: {server.listen_host}:{server.port}",
        f"max_payload: {NATS_MAX_PAYLOAD}",
        f'jetstream {{ store_dir: "{server.store_dir}" }}',
    ]
    if server.cluster_port is not None:
        routes = ", ".join(f"nats-route://{route}" for route in layout.routes(server))
        listen = f"{server.listen_host}:{server.cluster_port}"
        lines.append(f"cluster {{ name: autonomys, listen: {listen}, routes: [{routes}] }}")
    return "\n".join(lines) + "\n" + (nats_authorization(passwords) if passwords else "")


def render_machine(layout: ClusterLayout, machine: Machine, credentials: ClusterCredentials | None) -> dict[Path, File]:
    """Every file of one machine, keyed by its absolute path there: a conf.d file per program (or per
    group), each nats-server's config, and with `credentials` the cluster secret and the passwords of
    the roles it runs (and the operator's where a nats-server runs, for the util tools)."""
    settings = layout.settings
    files: dict[Path, File] = {}
    by_file: dict[str, list[Program]] = {}
    for program in machine.programs:
        by_file.setdefault(program.conf_name, []).append(program)
    for name, programs in by_file.items():
        path = settings.conf_dir / f"{name}.conf"
        text = f"# {path}\n# written by autonomys-farmer from the cluster's layout\n\n"
        if group := programs[0].group:
            text += f"[group:{group}]\nprograms={','.join(p.name for p in programs)}\n\n"
        files[path] = File(
            text + "\n".join(render_program(layout, machine, p, credentials is not None) for p in programs)
        )
    passwords = credentials.passwords if credentials is not None else None
    for program in machine.programs:
        if isinstance(program.runs, NatsServer):
            files[nats_conf_path(settings, program)] = File(nats_server_config(layout, program.runs, passwords), True)
    if credentials is not None:
        files[secret_path(settings)] = File(credentials.secret + "\n", True)
        roles = {program.role for program in machine.programs}
        if any(isinstance(program.runs, NatsServer) for program in machine.programs):
            roles.add(OPERATOR)
        for role in sorted(r for r in roles if r is not None):
            files[password_path(settings, role)] = File(credentials.passwords[role] + "\n", True)
    return files


def supervisord_config(settings: Settings, base: Path) -> str:
    """supervisord's own config for a layout run from `base` (`dev`): in the foreground, its control
    socket only its owner may use, the programs from the conf.d files."""
    return f"""\
; written by autonomys-farmer dev: supervisorctl -c {base / "supervisord.conf"} status | restart NAME
[supervisord]
nodaemon=true
logfile={settings.log_dir / "supervisord.log"}
pidfile={base / "supervisord.pid"}
childlogdir={settings.log_dir}
directory={base}

[unix_http_server]
file={socket_path(base)}
chmod=0700

[supervisorctl]
serverurl=unix://{socket_path(base)}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[include]
files = {settings.conf_dir}/*.conf
"""


def socket_path(base: Path) -> Path:
    return base / "supervisor.sock"


def write_files(files: dict[Path, File], root: Path | None = None) -> list[Path]:
    """Write rendered files (relative paths under `root`, absolute ones where they belong), atomically,
    secrets readable by their owner only."""
    written = []
    for path, file in sorted(files.items()):
        target = root / path if root is not None else path
        (write_secret if file.secret else write_atomically)(target, file.text.encode())
        written.append(target)
    return written


def this_interpreter() -> tuple[str, ...]:
    """The farmer command of a layout run from this checkout or install (`dev`, the tests)."""
    return (sys.executable, "-m", "autonomys_farmer.cli")
