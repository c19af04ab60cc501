"""A team's services, started by the tests on 127.0.0.1 and stopped by them: PostgreSQL (Debian's
server, `make services` installs it where missing) and an S3-compatible server (moto's server
mode). Nothing here mocks them: the tool talks to both over their real protocols."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.servers import free_port

PG_USER = "aestudy"
PG_PASSWORD = "aestudy-test-pw"
# moto accepts any credentials; boto3 and pyarrow need some set to sign their requests.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def pg_bin(program: str) -> str:
    """A PostgreSQL server program: Debian keeps them out of PATH, under /usr/lib/postgresql."""
    found = shutil.which(program) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(f"{program} not found: `make services` installs Debian's postgresql")
    return found


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _wait_for_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float) -> None:
    """Until something accepts connections on 127.0.0.1:port (or `proc` dies, or `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if (proc and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start on 127.0.0.1:{port}")
        time.sleep(0.1)


@dataclass
class Postgres:
    """A running server: `url(db)` for a database on it (created by `create`); `stop` and
    `start` take it down and bring it back on the same port with the same data (an outage)."""

    port: int
    data: Path
    options: str

    def url(self, db: str, password: str = PG_PASSWORD) -> str:
        return f"postgresql://{PG_USER}:{password}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        """Stop the server as an administrator would (`pg_ctl stop -m fast`: sessions ended)."""
        _pg_ctl(self.data, "-m", "fast", "stop")

    def start(self) -> None:
        """Start it again; returns once it accepts connections."""
        _pg_ctl(self.data, "-o", self.options, "-l", str(self.data.parent / "log"), "-w", "start")
        _wait_for_port(self.port, None, "PostgreSQL", 30)

    def create(self, db: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        return self.url(db)


@contextlib.contextmanager
def postgres_server(folder: Path) -> Iterator[Postgres]:
    """initdb in `folder` (password authentication over TCP), then the server on 127.0.0.1 until
    the block ends, then stopped (`pg_ctl stop`, this data folder's server only)."""
    folder.mkdir(parents=True, exist_ok=True)
    data, pwfile = folder / "data", folder / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (folder, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    initdb = [pg_bin("initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}"]
    auth = ["--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"]
    subprocess.run(_as_server_user(initdb + auth), check=True, capture_output=True)
    port = free_port()
    # fsync off: a test's server needs no durability across power cuts, and it is much faster
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    server = Postgres(port, data, options)
    server.start()
    try:
        yield server
    finally:
        _pg_ctl(data, "-m", "immediate", "stop", check=False)


def _pg_ctl(data: Path, *args: str, check: bool = True) -> None:
    command = _as_server_user([pg_bin("pg_ctl"), "-D", str(data), *args])
    subprocess.run(command, check=check, capture_output=True)


@dataclass
class S3:
    """A running S3-compatible server: `uri(bucket, prefix)` as `--storage` takes it."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def uri(self, bucket: str, prefix: str = "studies") -> str:
        return f"s3://{bucket}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())

    def create(self, bucket: str) -> str:
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _boto_credentials() -> dict:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def s3_server(folder: Path) -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 until the block ends; then stopped (this process only)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "moto.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **S3_ENV},
    )
    try:
        _wait_for_port(port, proc, "moto's S3 server", 60)
        yield S3(port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
