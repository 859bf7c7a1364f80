"""A checkout of another revision to run the benchmark's server from (``--against DIR``).

The server child runs as ``python -m benchmarks.server --port N`` with ``cwd=DIR`` and
``PYTHONPATH=DIR``, under this interpreter. Before a run, ``open_checkout`` asks a child
with that same environment where ``huizhen``, ``mediaserver`` and ``benchmarks.server``
come from, so that an installed copy of the package can never stand in for DIR unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PROBE_MODULES = ("huizhen", "mediaserver", "benchmarks.server")
_PROBE = ("import importlib.util, json, sys; "
          "print(json.dumps({m: importlib.util.find_spec(m).origin for m in sys.argv[1:]}))")


class CheckoutError(RuntimeError):
    pass


@dataclass(frozen=True)
class Checkout:
    root: Path
    env: dict[str, str]
    revision: str  # "abc1234" (git), or "" when DIR is not a git work tree


def revision_of(root: Path) -> str:
    """The short commit of a git work tree (with ``+dirty`` when it has changes), or ""."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=10, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return commit


def open_checkout(directory: Path, env: dict[str, str]) -> Checkout:
    """The checkout at ``directory``, its server's environment checked (CheckoutError)."""
    root = directory.resolve()
    if not (root / "benchmarks" / "server.py").is_file():
        raise CheckoutError(f"{root} holds no benchmarks/server.py: not a huizhen checkout")
    server_env = {**env, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", _PROBE, *PROBE_MODULES], cwd=root,
                          env=server_env, capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckoutError(f"{root}: its modules cannot be imported: {tail}")
    origins: dict[str, str | None] = json.loads(done.stdout)
    for module, origin in origins.items():
        if origin is None or not Path(origin).resolve().is_relative_to(root):
            raise CheckoutError(f"{root}: {module} would be imported from {origin}, "
                                "not from the checkout")
    return Checkout(root, server_env, revision_of(root))
