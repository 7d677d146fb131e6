"""``make server``: a shared MLflow tracking server on PostgreSQL, all under ``.server/``.

SQLite (``mlflow.db``) is the embedded default and stays so; it is one file on one
disk, which many machines (or a busy sweep) should not share. This module runs the
setup a team needs instead, on this machine:

* PostgreSQL from Debian's ``postgresql`` package (installed with apt-get when missing
  and we are root), a private cluster in ``.server/pg`` listening on 127.0.0.1 only, TCP
  only, password authentication; databases ``mlflow`` (runs) and ``optuna`` (studies).
* ``mlflow server`` on 127.0.0.1:PORT with ``--serve-artifacts``: artifacts travel
  through the server into ``.server/artifacts``, so clients need no shared file system.

Clients then only ``export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT``. For clients on
other machines (a SLURM array) the MLflow server, and only it, can listen on another
address (``--host``, ``make server SERVER_HOST=...``); it has no authentication of its own, so
use an address of a private network. PostgreSQL
refuses to run as root, so as root its programs run as the ``postgres`` user (which
owns ``.server/pg``); as anyone else they run as that user.

    python -m rnnlab.ops.server start [--port 5001] [--dir .server]
    python -m rnnlab.ops.server status | stop
    python -m rnnlab.ops.server port-check --port 5000   # make ui / serve: refuse a used port
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rnnlab.core.errors import UserError
from rnnlab.core.paths import project_root

PG_USER = "rnnlab"  # the cluster's superuser (a database role, not a system account)
DATABASES = ("mlflow", "optuna")
HEALTH_TIMEOUT_S = 180  # the first start creates MLflow's schema in PostgreSQL


class ServerError(UserError):
    """The server cannot be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a running server answers."""

    uri: str
    pg_port: int
    folder: Path

    def optuna_url(self) -> str:
        return (self.folder / "optuna_url").read_text().strip()


class ServerDir:
    """The files of one server: ``.server/`` by default (git-ignored)."""

    def __init__(self, folder: str | Path) -> None:
        self.root = Path(folder).resolve()
        self.pgdata = self.root / "pg"
        self.artifacts = self.root / "artifacts"
        self.state = self.root / "state.json"
        self.password = self.root / "pg_password"
        self.pg_log = self.root / "postgres.log"
        self.mlflow_log = self.root / "mlflow.log"

    def read_state(self) -> dict:
        return json.loads(self.state.read_text()) if self.state.exists() else {}

    def write_state(self, **values: object) -> None:
        self.state.write_text(json.dumps({**self.read_state(), **values}, indent=1) + "\n")


# ------------------------------------------------------------------ PostgreSQL
def find_pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl: Debian's newest version, else the PATH's."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_postgres(install: bool = True) -> Path:
    """PostgreSQL's programs; apt-get installs the ``postgresql`` package when missing."""
    pg_bin = find_pg_bin()
    if pg_bin is not None:
        return pg_bin
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServerError("PostgreSQL is not installed and cannot be installed from here "
                          "(needs root and apt-get); install Debian's postgresql package "
                          "(sudo apt-get install postgresql) and run make server again.")
    print("installing PostgreSQL (apt-get install postgresql) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServerError(f"`{' '.join(cmd)}` failed ({proc.stderr.strip()[-300:]}); "
                              f"install postgresql by hand and run make server again.")
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise ServerError("apt-get installed postgresql but no initdb was found under "
                          "/usr/lib/postgresql; check the package and run make server again.")
    return pg_bin


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses root: as root, run its programs as the postgres user."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ServerError(f"{what} failed: {detail[-1] if detail else proc.returncode}; "
                          f"see the log in the server folder.")
    return proc


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        # POSIX only
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _check_reachable_by_postgres(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)],
                           capture_output=True)
    if probe.returncode != 0:
        raise ServerError(f"the postgres user cannot reach {folder} (a parent folder is "
                          f"private); give the server a folder it can reach "
                          f"(make server SERVER_DIR=/srv/rnnlab-server, or --dir).")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def init_cluster(d: ServerDir, pg_bin: Path) -> None:
    """A new cluster in ``d.pgdata``: 127.0.0.1 only, no Unix socket, passwords required."""
    d.root.mkdir(parents=True, exist_ok=True)
    d.root.chmod(0o711)  # postgres may pass through, not list
    _check_reachable_by_postgres(d.root)
    password = secrets.token_urlsafe(24)
    if d.pgdata.exists():  # left by an initdb that failed: nothing in it to keep
        shutil.rmtree(d.pgdata)
    d.pgdata.mkdir(mode=0o700)
    _chown_to_postgres(d.pgdata)
    pwfile = d.root / "initdb.pw"  # initdb wants an empty data folder
    pwfile.write_text(password + "\n")
    _chown_to_postgres(pwfile)
    try:
        _run(_as_owner([str(pg_bin / "initdb"), "-D", str(d.pgdata), "-U", PG_USER,
                        f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                        "--locale=C"]), "initdb")
    finally:
        pwfile.unlink(missing_ok=True)
    d.password.write_text(password + "\n")
    d.password.chmod(0o600)
    port = free_port()
    settings = (f"\n# rnnlab make server\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = ''\n")
    with open(d.pgdata / "postgresql.conf", "a") as conf:  # root may write postgres's file
        conf.write(settings)
    d.write_state(pg_port=port, pg_bin=str(pg_bin))


def postgres_running(d: ServerDir, pg_bin: Path) -> bool:
    if not (d.pgdata / "postmaster.pid").exists():
        return False
    return subprocess.run(_as_owner([str(pg_bin / "pg_ctl"), "-D", str(d.pgdata), "status"]),
                          capture_output=True).returncode == 0


def start_postgres(d: ServerDir, pg_bin: Path) -> None:
    if postgres_running(d, pg_bin):
        return
    port = d.read_state()["pg_port"]
    if port_in_use(port):
        raise ServerError(f"PostgreSQL's port {port} (in {d.state}) is taken by another "
                          f"program; stop it, or remove {d.root} to start afresh.")
    if not d.pg_log.exists():
        d.pg_log.touch()
    _chown_to_postgres(d.pg_log)
    _run(_as_owner([str(pg_bin / "pg_ctl"), "-D", str(d.pgdata), "-l", str(d.pg_log),
                    "-w", "-t", "60", "start"]), "starting PostgreSQL (pg_ctl start)")


def stop_postgres(d: ServerDir, pg_bin: Path) -> bool:
    if not postgres_running(d, pg_bin):
        return False
    _run(_as_owner([str(pg_bin / "pg_ctl"), "-D", str(d.pgdata), "-m", "fast", "-w",
                    "stop"]), "stopping PostgreSQL (pg_ctl stop)")
    return True


def pg_url(d: ServerDir, database: str, driver: str = "+psycopg2") -> str:
    """A SQLAlchemy URL naming psycopg2 (SQLAlchemy 2.1 would otherwise pick psycopg 3)."""
    password = d.password.read_text().strip()
    return (f"postgresql{driver}://{PG_USER}:{password}@127.0.0.1:"
            f"{d.read_state()['pg_port']}/{database}")


def create_databases(d: ServerDir) -> None:
    # the optional [server] extra
    import psycopg2

    conn = psycopg2.connect(pg_url(d, "postgres", driver=""))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    url_file = d.root / "optuna_url"
    url_file.write_text(pg_url(d, "optuna") + "\n")
    url_file.chmod(0o600)


# ------------------------------------------------------------------ MLflow
def _healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_mlflow(d: ServerDir, port: int, workers: int, host: str = "127.0.0.1") -> str:
    """Start ``mlflow server`` (once); returns the URI clients export."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    uri = f"http://{shown}:{port}"
    local = f"http://127.0.0.1:{port}" if host in ("0.0.0.0", "::") else uri
    state = d.read_state()
    if _pid_alive(state.get("mlflow_pid")) and state.get("port") == port and _healthy(local):
        return uri
    if port_in_use(port, host):
        raise ServerError(f"port {port} is in use by another program; choose another "
                          f"(make server PORT={port + 10}).")
    d.artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
           pg_url(d, "mlflow"), "--serve-artifacts", "--artifacts-destination",
           d.artifacts.as_uri(), "--host", host, "--port", str(port),
           "--workers", str(workers)]
    with open(d.mlflow_log, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=d.root)
    d.write_state(mlflow_pid=proc.pid, port=port, uri=uri, health=local)
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = d.mlflow_log.read_text(errors="replace").strip().splitlines()[-1:]
            raise ServerError(f"mlflow server exited with code {proc.returncode} "
                              f"({tail[0] if tail else 'no output'}); see {d.mlflow_log}.")
        if _healthy(local):
            return uri
        time.sleep(1.0)
    stop_mlflow(d)
    raise ServerError(f"mlflow server did not answer on {uri} within {HEALTH_TIMEOUT_S} s; "
                      f"see {d.mlflow_log}.")


def stop_mlflow(d: ServerDir, timeout: float = 30.0) -> bool:
    """Stop the server we started (its own process group: the server and its workers)."""
    pid = d.read_state().get("mlflow_pid")
    if not _pid_alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        with contextlib.suppress(ChildProcessError):  # our child (tests): no zombie
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    d.write_state(mlflow_pid=None)
    return True


# ------------------------------------------------------------------ the commands
def start(folder: str | Path, port: int = 5001, workers: int = 2, install: bool = True,
          host: str = "127.0.0.1") -> ServerInfo:
    """Install (if need be), initialise (once) and start PostgreSQL and the MLflow server."""
    d = ServerDir(folder)
    state = d.read_state()
    ours = _pid_alive(state.get("mlflow_pid")) and state.get("port") == port
    if not ours and port_in_use(port, host):  # before PostgreSQL starts for nothing
        raise ServerError(f"port {port} is in use by another program; choose another "
                          f"(make server PORT={port + 10}).")
    pg_bin = ensure_postgres(install)
    if not (d.pgdata / "PG_VERSION").exists():
        init_cluster(d, pg_bin)
    start_postgres(d, pg_bin)
    create_databases(d)
    uri = start_mlflow(d, port, workers, host)
    return ServerInfo(uri=uri, pg_port=d.read_state()["pg_port"], folder=d.root)


def stop(folder: str | Path) -> list[str]:
    """Stop the MLflow server, then PostgreSQL; returns what was stopped."""
    d = ServerDir(folder)
    stopped = ["mlflow server"] if stop_mlflow(d) else []
    pg_bin = Path(d.read_state().get("pg_bin") or find_pg_bin() or "/nonexistent")
    if d.pgdata.exists() and (pg_bin / "pg_ctl").exists() and stop_postgres(d, pg_bin):
        stopped.append("PostgreSQL")
    return stopped


def status(folder: str | Path) -> str:
    d = ServerDir(folder)
    state = d.read_state()
    uri = state.get("uri")
    if uri and _pid_alive(state.get("mlflow_pid")) and _healthy(state.get("health", uri)):
        return f"running: {uri} (PostgreSQL on 127.0.0.1:{state.get('pg_port')}, {d.root})"
    return f"not running ({d.root})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "port-check"])
    parser.add_argument("--dir", default=None,
                        help="server folder (default: <project>/.server)")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the MLflow server listens on (PostgreSQL: always "
                             "127.0.0.1)")
    parser.add_argument("--workers", type=int, default=2, help="MLflow server workers")
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get install postgresql")
    args = parser.parse_args(argv)
    folder = Path(args.dir) if args.dir else project_root() / ".server"
    try:
        if args.command == "start":
            info = start(folder, args.port, args.workers, install=not args.no_install,
                         host=args.host)
            print(f"MLflow tracking server on PostgreSQL: {info.uri} (files in {info.folder})\n"
                  f"  export MLFLOW_TRACKING_URI={info.uri}\n"
                  f"  Optuna on the same PostgreSQL: "
                  f"hydra.sweeper.storage=$(cat {info.folder / 'optuna_url'})\n"
                  f"  stop it with: make server-stop")
        elif args.command == "port-check":
            if port_in_use(args.port, args.host):
                raise ServerError(f"port {args.port} is in use by another program; choose "
                                  f"another with PORT=<port>.")
        elif args.command == "stop":
            stopped = stop(folder)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        else:
            print(status(folder))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
