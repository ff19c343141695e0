"""Every user error ends in one line naming the bad value and a non-zero status (2 for usage errors),
never a traceback: a table of bad arguments, paths, URLs and files through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomys_farmer.cli import main

NATS = "nats://127.0.0.1:1"
SS58 = "sudPaS7EUBJjjUJr6AyF6PYcpCf4B6GJKvoVKJh9kLdjPVsfE"

# (argv, environment, expected status: 2 usage error / 1 other, text the last line names)
CASES = [
    (["cluster", "--nats-server", "127.0.0.1:4222", "proof-server"], {}, 2, "'127.0.0.1:4222'"),
    (["cluster", "--nats-server", "nats://h:99999", "proof-server"], {}, 2, "'nats://h:99999'"),
    (["cluster", "--nats-server", NATS, "nosuch"], {}, 2, "'nosuch'"),
    (["cluster", "--nats-server", NATS, "--kzg-parameters", "{tmp}/absent.bin", "proof-server"], {}, 1, "absent.bin"),
    (["cluster", "--nats-server", NATS, "--kzg-parameters", "{tmp}/garbage.bin", "proof-server"], {}, 1, "SHA-256"),
    (
        ["cluster", "--nats-server", NATS, "plot-client", "--reward-address", "bad", "path={tmp}/f,sectors=1"],
        {},
        1,
        "'bad'",
    ),
    (
        ["cluster", "--nats-server", NATS, "plot-client", "--reward-address", SS58, "path={tmp}/f"],
        {},
        2,
        "lacks sectors=",
    ),
    (
        ["cluster", "--nats-server", NATS, "plot-client", "--reward-address", SS58, "path={tmp}/f,sectors=0"],
        {},
        2,
        "sectors=0",
    ),
    (["cluster", "--nats-server", NATS, "sharded-cache", "path={tmp}/c,size=lots"], {}, 2, "'lots'"),
    (["cluster", "--nats-server", NATS, "sharded-cache", "path=/proc/nope,size=1GiB"], {}, 1, "/proc/nope"),
    (["cluster", "--nats-server", NATS, "plot-server", "--listen-port", "99999", "{tmp}/ps"], {}, 2, "99999"),
    (["cluster", "--nats-server", NATS, "controller", "--node-rpc-url", "ws://h:1"], {}, 2, "--base-path"),
    (["dev-node", "--listen", "nohost"], {}, 2, "'nohost'"),
    (["dev-node", "--peer", "127.0.0.1:9944"], {}, 2, "'127.0.0.1:9944'"),
    (["dev-node", "--sync-from-peers"], {}, 2, "needs a --peer"),
    (["dev", "--nodes", "0"], {}, 2, "'0'"),
    (["dev", "--kzg-parameters", "{tmp}/absent.bin"], {}, 1, "absent.bin"),
    (["util", "supervisor-config", "{tmp}/absent.toml"], {}, 1, "absent.toml"),
    (["util", "supervisor-config", "{tmp}/broken.toml"], {}, 1, "broken.toml"),
    (["util", "sharded-cache-benchmark", "--nats-server", NATS, "--sectors", "-3", "--no-verify"], {}, 2, "'-3'"),
    (["util", "reinitialization-cache", "--nats-server", "localhost"], {}, 2, "'localhost'"),
    (["export-piece"], {"NODE_URL": ""}, 1, "NODE_URL"),
    (["export-piece", "--no-verify"], {"NODE_URL": "ftp://x"}, 1, "'ftp://x'"),
]


@pytest.mark.parametrize(("argv", "env", "status", "named"), CASES, ids=lambda v: None)
def test_a_user_error_is_one_line(argv, env, status, named, tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "garbage.bin").write_bytes(b"garbage")
    (tmp_path / "broken.toml").write_text("[nope")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    code = exited.value.code
    err = capsys.readouterr().err
    if isinstance(code, str):  # SystemExit("message"): Python prints it and exits with status 1
        assert status == 1, code
        line = code
    else:
        assert code == status, err
        line = err.strip().splitlines()[-1]
    assert "\n" not in line and "Traceback" not in err
    assert named.replace("{tmp}", str(tmp_path)) in line, line
