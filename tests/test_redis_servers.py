"""The Redis harness of the fault tests (tests/redis_servers.py) does what it says: a
fault test that passes because its fault never happened would prove nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from . import redis_servers


def test_standalone_server_is_its_own_not_the_shared_one(redis_server):
    assert redis_server.port != 6379
    client = redis_server.client()
    client.set("harness", "mine")
    assert client.get("harness") == b"mine"
    assert client.info("server")["tcp_port"] == redis_server.port


def test_restart_from_a_snapshot_brings_back_its_data_and_loses_later_writes(redis_server):
    client = redis_server.client()
    client.set("state", "before")
    snapshot = redis_server.snapshot()
    client.set("state", "after")
    client.set("later", "1")

    redis_server.restart(snapshot)

    client = redis_server.client()
    assert client.get("state") == b"before"
    assert client.get("later") is None


def test_background_snapshot_is_a_copy_later_saves_do_not_change(redis_server, tmp_path):
    client = redis_server.client()
    client.set("state", "before")
    snapshot = redis_server.snapshot(tmp_path / "early.rdb", background=True)
    client.set("state", "after")
    redis_server.snapshot()  # overwrites the server's own dump file, not the copy

    redis_server.restart(snapshot)

    assert redis_server.client().get("state") == b"before"


def test_kill_is_abrupt_and_restart_empty_forgets_everything(redis_server):
    redis_server.client().set("state", "x")
    pid = redis_server.pid

    redis_server.kill()

    assert not redis_server.running
    with pytest.raises(redis.ConnectionError):
        redis_server.client(socket_timeout=1).ping()
    redis_server.restart(empty=True)
    assert redis_server.pid != pid
    assert redis_server.client().get("state") is None


def test_paused_writes_time_out_while_reads_go_on(redis_server):
    client = redis_server.client(socket_timeout=0.5)
    client.set("state", "allowed")

    redis_server.pause_writes(10_000)

    assert client.get("state") == b"allowed"
    with pytest.raises(redis.TimeoutError):
        client.set("state", "revoked")
    with pytest.raises(redis.TimeoutError):
        redis_server.client(socket_timeout=0.5).publish("channel", "revoked")
    redis_server.unpause()
    # Writes go through again. (What became of the write that timed out is the
    # server's business: the client cannot tell, so the app must not depend on it.)
    client.set("state", "written-after")
    assert client.get("state") == b"written-after"


def test_the_folder_and_processes_are_gone_after_the_block():
    try:
        with redis_servers.standalone() as server:
            folder = server.folder.parent
            process = server.process
            assert folder.is_dir()
    except redis_servers.RedisUnavailable as error:
        pytest.skip(str(error))
    assert process is not None and process.poll() is not None
    assert not Path(folder).exists()


def test_sentinel_failover_makes_the_replica_the_master(redis_sentinel):
    old = redis_sentinel.current_master()
    assert old is redis_sentinel.master
    assert redis_sentinel.replica.role() == "slave"
    old.client().set("before-failover", "1")
    redis_servers.wait_for(
        lambda: redis_sentinel.replica.client().get("before-failover") == b"1",
        10,
        "replication",
    )

    new = redis_sentinel.failover()

    assert new is redis_sentinel.replica
    assert redis_sentinel.master_address() == ("127.0.0.1", new.port)
    assert new.role() == "master"
    new.client().set("after-failover", "1")  # it takes writes now
    assert new.client().get("before-failover") == b"1"


def test_django_redis_sentinel_settings_reach_the_current_master(redis_sentinel):
    pytest.importorskip("django_redis")
    from django.core.cache import caches
    from django.test import override_settings

    entry = redis_sentinel.django_redis_cache()
    with override_settings(CACHES={"default": {**entry}, "sentinel": entry}):
        caches["sentinel"].set("via-sentinel", "yes", 30)
        master = redis_sentinel.current_master()
        assert master.client().keys("*via-sentinel*")


def test_cluster_spreads_slots_over_three_masters(redis_cluster):
    client = redis_cluster.client()
    nodes = client.get_primaries()
    assert len(nodes) == 3
    for index in range(30):
        client.set(f"key-{index}", index)
    # Keys that hash to different slots live on different nodes...
    owners = {client.get_node_from_key(f"key-{index}").port for index in range(30)}
    assert len(owners) > 1
    # ... and a multi-key command across slots fails unless hash tags keep them together.
    with pytest.raises(redis.RedisClusterException):
        client.execute_command("MGET", "key-1", "key-2", "key-3")
    client.set("{family}:state", "a")
    client.set("{family}:tombstone", "b")
    assert client.execute_command("MGET", "{family}:state", "{family}:tombstone") == [
        b"a",
        b"b",
    ]


def test_cluster_sharded_pubsub_delivers(redis_cluster):
    client = redis_cluster.client()
    pubsub = client.pubsub()
    pubsub.ssubscribe("revocations")
    confirmation = redis_servers.wait_for(
        lambda: pubsub.get_sharded_message(timeout=0.1), 10, "the subscription"
    )
    assert confirmation["type"] == "ssubscribe"
    client.spublish("revocations", "family-1")
    message = redis_servers.wait_for(
        lambda: _data_message(pubsub), 10, "the sharded message to arrive"
    )
    assert message["data"] == b"family-1"
    pubsub.close()


def _data_message(pubsub):
    message = pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
    return message if message and message["type"] == "smessage" else None


def test_a_port_taken_meanwhile_is_traded_for_another(redis_server, tmp_path, monkeypatch):
    # Another process's server already listens on the port this one draws.
    monkeypatch.setattr(redis_servers, "free_port", lambda: redis_server.port)
    other = redis_servers.RedisServer(tmp_path)
    monkeypatch.undo()
    try:
        other.start()
        assert other.port != redis_server.port
        assert other.client().info("server")["process_id"] == other.pid
    finally:
        other.kill()
