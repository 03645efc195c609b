"""Redis servers of a test's (or a benchmark's) own, on free loopback ports.

The fault tests need to do to Redis what production does to it: pause its writes (what
a failover does, ``CLIENT PAUSE … WRITE``), kill it, bring it back from a snapshot taken
earlier, fail a Sentinel-managed master over to its replica, and run it as a Cluster.
None of that may touch the shared server on 6379, so each helper here starts
``redis-server`` processes of its own, in a temporary folder of its own, and removes
both when its ``with`` block ends.

No pytest here (the benchmarks use these too): a missing ``redis-server`` raises
:class:`RedisUnavailable`, which the fixtures in ``tests/conftest.py`` turn into a skip.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
# Cluster nodes talk on their port + 10000 (the cluster bus), so every port is drawn
# from a range where that one exists too, and both are checked.
PORT_RANGE = (20000, 29999)
MASTER_NAME = "rt-master"


class RedisUnavailable(RuntimeError):
    """``redis-server`` (or ``redis-cli``, for a Cluster) is not installed."""


class PortTaken(RuntimeError):
    """The server could not listen on its port: someone else took it meanwhile."""


def redis_binary(name: str = "redis-server") -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisUnavailable(f"{name} is not installed")
    return path


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


_taken: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, whose cluster-bus port (+10000) is free too,
    never one this process handed out before (servers restart on their own port)."""
    for _ in range(1000):
        port = random.randint(*PORT_RANGE)
        if port not in _taken and _port_is_free(port) and _port_is_free(port + 10000):
            _taken.add(port)
            return port
    raise RuntimeError("no free loopback port found")


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; its last error or a
    ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (redis.RedisError, OSError) as exc:
            error = exc
        else:
            if result:
                return result
        time.sleep(0.05)
    raise TimeoutError(
        f"{what} within {timeout:g} s" + (f" (last error: {error})" if error else "")
    )


class RedisServer:
    """One ``redis-server`` process on a loopback port, with its data folder.

    Persistence is off unless asked for (``SAVE``/``BGSAVE`` by :meth:`snapshot`): what
    is in memory is what the test put there, and a restart loads only the dump file the
    test chose (:meth:`restart`).
    """

    def __init__(self, folder: Path, *extra: str, port: int | None = None) -> None:
        self.own_port = port is None  # drawn here: another may be drawn if it is taken
        self.port = port or free_port()
        self.base = folder
        self.folder = folder / str(self.port)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def dump_file(self) -> Path:
        return self.folder / "dump.rdb"

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server; no retries unless asked for (redis-py retries a
        timed-out command three times by default, which would hide a fault)."""
        options.setdefault("socket_timeout", 5)
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=HOST, port=self.port, **options)

    def command_line(self) -> list[str]:
        return [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.folder),
            "--dbfilename",
            self.dump_file.name,
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.folder / "redis.log"),
            *self.extra,
        ]

    def start(self) -> RedisServer:
        if self.running:
            raise RuntimeError(f"redis-server on {self.port} is already running")
        for attempt in range(3):
            self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                self.command_line(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_for(self._answers, 10, f"redis-server on port {self.port} to answer PING")
            except PortTaken:
                # Another test process (pytest-xdist) took the port between our check
                # and the server's bind: draw another, before the first write to it.
                if not self.own_port or attempt == 2 or self.dump_file.exists():
                    raise
                self.port = free_port()
                self.folder = self.base / str(self.port)
                self.folder.mkdir(parents=True, exist_ok=True)
                continue
            return self
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
            if "Address already in use" in log:
                raise PortTaken(self.port)
            raise RuntimeError(f"redis-server on {self.port} exited: {log}")
        with self.client(socket_timeout=1) as client:
            # A server still loading its dump file answers PING with an error; and the
            # one answering must be ours, not another that holds the port.
            return bool(client.ping()) and client.info("server")["process_id"] == self.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown save, no goodbye to clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM with --save "" exits without writing a dump file.
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, snapshot: Path | None = None, *, empty: bool = False) -> RedisServer:
        """Start again on the same port: from ``snapshot`` (a dump file that
        :meth:`snapshot` copied aside), from nothing (``empty``), or from whatever dump
        file the folder holds (the last ``SAVE``)."""
        self.kill()
        if snapshot is not None:
            shutil.copyfile(snapshot, self.dump_file)
        elif empty:
            self.dump_file.unlink(missing_ok=True)
        return self.start()

    def snapshot(self, destination: Path | None = None, *, background: bool = False) -> Path:
        """Write a dump file (``SAVE``, or ``BGSAVE`` and wait for it) and copy it to
        ``destination`` (default: a new file beside the folder), so that later saves
        do not change it. Returns the copy."""
        client = self.client()
        if background:
            # LASTSAVE counts whole seconds; the count of saves tells one apart.
            before = client.info("persistence")["rdb_saves"]
            client.bgsave()
            wait_for(
                lambda: (
                    client.info("persistence")["rdb_bgsave_in_progress"] == 0
                    and client.info("persistence")["rdb_saves"] > before
                ),
                30,
                "BGSAVE to finish",
            )
            if client.info("persistence")["rdb_last_bgsave_status"] != "ok":
                raise RuntimeError("BGSAVE failed")
        else:
            client.save()
        client.close()
        if destination is None:
            destination = self.folder.parent / f"snapshot-{self.port}-{time.time_ns()}.rdb"
        shutil.copyfile(self.dump_file, destination)
        return destination

    def pause_writes(self, milliseconds: int) -> None:
        """``CLIENT PAUSE <ms> WRITE``: writes (PUBLISH too) wait, reads go on."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", str(milliseconds), "WRITE")

    def unpause(self) -> None:
        with self.client() as client:
            client.execute_command("CLIENT", "UNPAUSE")

    def role(self) -> str:
        with self.client(socket_timeout=1) as client:
            return str(client.info("replication")["role"])


@contextlib.contextmanager
def _folder(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def standalone(*extra: str) -> Iterator[RedisServer]:
    """One server, stopped (and its folder removed) when the block ends."""
    redis_binary()
    with _folder("rt-redis-") as folder:
        server = RedisServer(folder, *extra)
        try:
            yield server.start()
        finally:
            server.kill()


class Sentinel:
    """A master, its replica, and ``count`` sentinels watching them."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder = folder
        self.master = RedisServer(folder)
        self.replica = RedisServer(folder)
        self.sentinel_ports = [free_port() for _ in range(count)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.quorum = count // 2 + 1
        # A name of its own: django-redis keeps its connection pools for the whole
        # process, by URL ("redis://<name>/0"), so a name used twice would reach the
        # sentinels of an earlier set-up.
        self.name = f"{MASTER_NAME}-{self.sentinel_ports[0]}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [(HOST, port) for port in self.sentinel_ports]

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.sentinel_ports[index], socket_timeout=5, decode_responses=True
        )

    def start(self) -> Sentinel:
        self.master.start()
        self.replica.extra = ("--replicaof", HOST, str(self.master.port))
        self.replica.start()
        wait_for(self._replica_in_sync, 20, "the replica to sync with its master")
        for port in self.sentinel_ports:
            config = self.folder / f"sentinel-{port}.conf"
            # Sentinel rewrites its file as it learns: each has one of its own.
            config.write_text(
                f"port {port}\n"
                f"bind {HOST}\n"
                f'dir "{self.folder}"\n'
                f'logfile "{self.folder / f"sentinel-{port}.log"}"\n'
                f"sentinel monitor {self.name} {HOST} {self.master.port} {self.quorum}\n"
                # Long enough that a loaded machine's slow PING is not "down" (a
                # failover here is asked for, never waited for).
                f"sentinel down-after-milliseconds {self.name} 5000\n"
                f"sentinel failover-timeout {self.name} 10000\n"
                f"sentinel parallel-syncs {self.name} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(  # noqa: S603
                    [redis_binary(), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for index in range(len(self.sentinel_ports)):
            wait_for(
                lambda index=index: self._knows_replica(index),
                30,
                "each sentinel to know the master and its replica",
            )
        return self

    def _replica_in_sync(self) -> bool:
        with self.replica.client(socket_timeout=1) as client:
            return client.info("replication").get("master_link_status") == "up"

    def _knows_replica(self, index: int) -> bool:
        with self.sentinel_client(index) as client:
            master = client.execute_command("SENTINEL", "MASTER", self.name)
            replicas = client.execute_command("SENTINEL", "REPLICAS", self.name)
        return master.get("flags") == "master" and any(
            int(replica["port"]) == self.replica.port
            and "disconnected" not in replica["flags"]
            and "s_down" not in replica["flags"]
            for replica in replicas
        )

    def master_address(self, index: int = 0) -> tuple[str, int]:
        with self.sentinel_client(index) as client:
            host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return str(host), int(port)

    def current_master(self) -> RedisServer:
        port = self.master_address()[1]
        return self.master if port == self.master.port else self.replica

    def failover(self) -> RedisServer:
        """``SENTINEL FAILOVER``: the replica becomes the master (no agreement needed),
        waited for until the sentinels name it and it says it is one. Returns it."""
        old = self.current_master()
        new = self.replica if old is self.master else self.master
        with self.sentinel_client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.name)
        for index in range(len(self.sentinel_ports)):
            wait_for(
                lambda index=index: self.master_address(index)[1] == new.port,
                30,
                "the sentinels to name the new master",
            )
        wait_for(lambda: new.role() == "master", 30, "the new master to take the role")
        return new

    def django_redis_cache(self, db: int = 0, **options: Any) -> dict[str, Any]:
        """A ``CACHES`` entry for django-redis's Sentinel client on this set-up."""
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{self.name}/{db}",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": self.addresses,
                **options,
            },
        }

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        self.replica.kill()
        self.master.kill()


@contextlib.contextmanager
def sentinel(count: int = 1) -> Iterator[Sentinel]:
    """A master, a replica and ``count`` (1-3) sentinels; all killed, and their folder
    removed, when the block ends."""
    if not 1 <= count <= 3:
        raise ValueError("1 to 3 sentinels")
    redis_binary()
    with _folder("rt-sentinel-") as folder:
        setup = Sentinel(folder, count)
        try:
            yield setup.start()
        finally:
            setup.stop()


class Cluster:
    """``size`` masters (no replicas) holding all 16384 slots between them."""

    def __init__(self, folder: Path, size: int) -> None:
        self.nodes = [
            RedisServer(
                folder,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            )
            for _ in range(size)
        ]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    def url(self) -> str:
        return self.nodes[0].url()

    def client(self, **options: Any) -> redis.RedisCluster:
        options.setdefault("socket_timeout", 5)
        return redis.RedisCluster(host=HOST, port=self.nodes[0].port, **options)

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start()
        subprocess.run(  # noqa: S603
            [
                redis_binary("redis-cli"),
                "--cluster",
                "create",
                *(f"{HOST}:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(self._ok, 30, "cluster_state:ok on every node")
        return self

    def _ok(self) -> bool:
        for node in self.nodes:
            with node.client(socket_timeout=1, decode_responses=True) as client:
                info = client.execute_command("CLUSTER", "INFO")
            if "cluster_state:ok" not in str(info):
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def cluster(size: int = 3) -> Iterator[Cluster]:
    """A Cluster of ``size`` masters on loopback; killed and removed afterwards."""
    redis_binary()
    redis_binary("redis-cli")
    with _folder("rt-cluster-") as folder:
        setup = Cluster(folder, size)
        try:
            yield setup.start()
        finally:
            setup.stop()
