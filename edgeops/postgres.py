"""A throw-away PostgreSQL cluster for MLflow's backend store (tests, `edgeops up --postgres`).

Debian's server binaries (`initdb`, `postgres`) refuse to run as root. When we are root (CI,
containers) the cluster's directory is handed to an unprivileged account (`nobody`) and both
programs run under it through `setpriv`, which changes the user and then execs, so the pid we
record is the postmaster itself. Clients connect over TCP on loopback with trust auth: the
cluster is local, short-lived and never listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from edgeops.services import ServiceError, ServiceSpec

SUPERUSER = "edgeops"
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _program(name: str) -> str:
    """`initdb`/`postgres` from the PATH, else Debian's versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ServiceError(f"{name} not found; install PostgreSQL (Debian: postgresql)", where="PATH")


def _unprivileged_prefix(owner: str = "nobody") -> list[str]:
    """setpriv to `owner` when running as root; nothing otherwise."""
    if os.geteuid() != 0:
        return []
    entry = pwd.getpwnam(owner)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ServiceError("running as root and setpriv is missing: cannot drop privileges for PostgreSQL",
                           where="PATH")
    return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


def _hand_over(root: Path, owner: str = "nobody") -> None:
    """Give the cluster directory to `owner` and check every parent lets it through."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(owner)
    for path in [root, *root.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in root.parents:
        if not os.stat(parent).st_mode & 0o001:
            raise ServiceError(f"{owner} cannot enter {parent}: put the cluster under a world-searchable "
                               "directory such as /tmp", where=str(root))


def init_cluster(root: Path) -> Path:
    """`initdb` a new cluster in `<root>/data` (superuser `edgeops`, trust auth); returns the data dir."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / "socket").mkdir(exist_ok=True)
    data = root / "data"
    _hand_over(root)
    argv = [*_unprivileged_prefix(), _program("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--no-instructions", "-N"]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ServiceError(f"initdb failed: {tail}", where=str(data))
    return data


def postgres_spec(root: Path, port: int, *, fast: bool = False) -> ServiceSpec:
    """The postmaster in the foreground on 127.0.0.1:`port`; SIGINT is its fast shutdown."""
    argv = [*_unprivileged_prefix(), _program("postgres"), "-D", str(root / "data"), "-h", "127.0.0.1",
            "-p", str(port), "-k", str(root / "socket")]
    for setting in FAST_SETTINGS if fast else ():
        argv += ["-c", setting]
    return ServiceSpec("postgres", argv, {"LC_ALL": "C"}, None, port, stop_signal=signal.SIGINT,
                       url=database_uri(port, "postgres", None))


def database_uri(port: int, database: str, driver: str | None = "psycopg2") -> str:
    """SQLAlchemy URI (SQLAlchemy 2.1 defaults `postgresql://` to psycopg 3, which is not installed;
    psycopg2 is); `driver=None` gives the plain libpq URI."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{SUPERUSER}@127.0.0.1:{port}/{database}"


def create_database(port: int, name: str) -> str:
    """CREATE DATABASE `name` (if missing) and return its SQLAlchemy URI."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.Error as exc:
        raise ServiceError(f"cannot create database {name}: {exc}".strip(), where=database_uri(port, name)) from exc
    finally:
        conn.close()
    return database_uri(port, name)
