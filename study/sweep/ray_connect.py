"""Where a sweep's trials run: a local Ray of its own, or a cluster it joins, checked before
anything is launched (an address that answers, resources some node has, shared storage and a
tracking server on several nodes)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import ray

from models import ConfigError, ResourceError
from study.sweep import bucket, internals, leftovers
from study.sweep.cluster import check_shared_storage

if TYPE_CHECKING:
    from study.sweep.launch import SweepOptions


def connect(options: SweepOptions, folder: Path) -> None:
    """Start a local Ray or join a cluster, then check the cluster can run one trial at all."""
    if not ray.is_initialized():
        if options.address:
            check_address(options.address)
            try:
                # quiet as a Ray of our own: the trials' logs stay in each node's Ray session
                # folder (`ray logs`); the terminal holds the tool's lines
                ray.init(address=options.address, configure_logging=False, log_to_driver=False)
            except ConnectionError as exc:
                raise ResourceError(
                    f"--address {options.address}: cannot join that Ray cluster ({exc}). Is one "
                    "running there (`ray up cluster.yaml`, `ray start --head`)? If it uses token "
                    "authentication, set RAY_AUTH_MODE=token and give this machine its token "
                    "(~/.ray/auth_token, see docs/cluster.md)"
                ) from None

        else:
            # "local": a new Ray of our own, even if another cluster on this machine left its
            # address in /tmp/ray/ray_current_cluster (ray.init() would try to join that one).
            leftovers.stop(folder)
            with internals.ray_in_own_process_groups():
                ray.init(
                    address="local",
                    include_dashboard=False,
                    configure_logging=False,
                    log_to_driver=False,
                )
            private_token()
            leftovers.remember(folder, internals.session_dir())
    check_resources(options)
    if sum(1 for n in ray.nodes() if n.get("Alive")) > 1:
        check_multi_node(options, folder)


def private_token() -> None:
    """Ray writes its token (~/.ray/auth_token) readable by every user of the machine; the
    token is what keeps other users from submitting code to this Ray, so keep it the owner's."""
    import os
    import stat

    token = Path.home() / ".ray" / "auth_token"
    if token.is_file() and token.stat().st_uid == os.getuid():
        token.chmod(stat.S_IRUSR | stat.S_IWUSR)


def check_address(address: str, timeout: float = 10.0) -> None:
    """A host:port that does not answer, or answers but is not a Ray head, fails now: Ray itself
    retries connecting for minutes, and waits on a listener that is not Ray's without end."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--address {address}: expected 'auto', host:port or ray://host:port of a Ray "
            "cluster's head (port 6379 by default, 10001 for ray://)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            speaks_http2 = answers_http2(conn)
    except (OSError, ValueError) as exc:
        raise ResourceError(
            f"--address {address}: nothing answers there ({exc}); start the cluster's head "
            "(`ray up cluster.yaml`, or `ray start --head` on that machine) or fix the address "
            "(host:port of the head's GCS, 6379 by default)"
        ) from None
    if not speaks_http2:
        raise ResourceError(
            f"--address {address}: something answers there, but not a Ray cluster's head (no "
            f"gRPC handshake within {timeout:g} s): fix the address (host:port of the head's "
            "GCS, 6379 by default; ray://host:10001 for the Ray client)"
        )


# HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
SETTINGS_FRAME = 4


def answers_http2(conn) -> bool:
    """Whether the peer answers as an HTTP/2 server: Ray's head (its GCS, or the Ray client
    server behind ray://) speaks gRPC, whose server's first frame is SETTINGS; any other
    listener says something else, or nothing until the connection's timeout."""

    try:
        conn.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except (TimeoutError, ConnectionError):
        return False
    return header[3] == SETTINGS_FRAME


def check_multi_node(options: SweepOptions, folder: Path) -> None:
    """Several machines: results and tracking must live where every node reaches them."""
    if not (options.tracking_uri or "").startswith("http"):
        raise ConfigError(
            f"--tracking-uri {options.tracking_uri} is a file on this node; on a multi-node cluster "
            "every trial must log to a tracking server: start `python -m study server` on the head "
            "and pass --tracking-uri http://<head>:5000"
        )
    if not bucket.is_remote(options.storage):  # a bucket: every node reaches it over the network
        check_shared_storage(folder)


def local_lanes(options: SweepOptions) -> int | None:
    """How many trials this sweep's own local Ray runs at once; None when it joins a cluster,
    whose size an autoscaler may change while the sweep runs (`pending_on_a_cluster`).

    Given no --max-concurrent, Tune keeps one trial of a searcher pending at a time: each lane's
    trial waits until the previous one's worker has started and imported torch (~5 s here), so
    the lanes came up one after another (8 lanes on a GPU: the last ~35 s late). As a limit it
    lets every idle lane get a trial at once, and no more suggestions than lanes are in flight.
    """
    return None if options.address else lanes_offered(options)


def lanes_offered(options: SweepOptions) -> int:
    """How many trials the Ray cluster can run at once now: its CPUs (and GPUs) over a
    trial's."""
    resources = ray.cluster_resources()
    # Ray packs fractional requests in steps of 1e-4: 1 GPU holds ten trials of 0.1
    lanes = math.floor(resources.get("CPU", 0.0) / options.cpus_per_trial + 1e-6)
    if options.gpus_per_trial:
        lanes = min(lanes, math.floor(resources.get("GPU", 0.0) / options.gpus_per_trial + 1e-6))
    return max(1, lanes)


PENDING_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


@contextlib.contextmanager
def pending_on_a_cluster(options: SweepOptions, searched: bool) -> Iterator[None]:
    """On a cluster (--address) with a searcher and no --max-concurrent, let Tune keep as many
    trials pending as twice the lanes the cluster offers at launch (or resume): every lane gets
    a trial at once, and an autoscaler sees demand for as many again. Tune's own rule keeps one
    searcher trial pending at a time: the lanes filled one worker start after another (a Ray
    user saw under 25% of 32 workers busy at 10k trials), and the autoscaler saw one trial's
    demand. More pending trials than that would hand TPE's suggestions out before it has
    learnt from the trials running. A limit the user set in Tune's variable stands."""
    if not options.address or options.max_concurrent or not searched or PENDING_ENV in os.environ:
        yield
        return
    os.environ[PENDING_ENV] = str(2 * lanes_offered(options))
    try:
        yield
    finally:
        os.environ.pop(PENDING_ENV, None)


def check_resources(options: SweepOptions) -> None:
    """A request no node can meet makes Tune wait forever: refuse it before launch."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if options.gpus_per_trial > gpus:
        raise ConfigError(
            f"--gpus-per-trial {options.gpus_per_trial:g} but no node of the Ray cluster has that many "
            f"GPUs (largest: {gpus:g}); use --gpus-per-trial 0 or join a GPU cluster with --address"
        )
    if options.cpus_per_trial > cpus:
        raise ConfigError(
            f"--cpus-per-trial {options.cpus_per_trial:g} but the largest node has {cpus:g} CPUs"
        )
