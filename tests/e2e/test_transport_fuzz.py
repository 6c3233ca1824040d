"""Garbage at both of the daemon's ROUTERs: it drops and counts, and goes on serving.

Frames come from a fixed seed, so a failure reproduces. Every kind of bad frame goes to the
control endpoint and to the agents endpoint, both read from daemon.json as a user would,
from a peer that gets past each one's door: the control token in front of every frame, an
allowed CURVE key on the agents endpoint. (What happens without them: test_control.py and
test_crew.py.)
"""

from __future__ import annotations

import random
import struct

import msgpack
import pytest

from crewctl.testing import Supervisor, wait_until, write_agent
from crewctl.testing.hosts import RawPeer, peer_keys, status, wait_for_host
from crewctl.transport.codec import MAX_DEPTH, MAX_FRAME, pack
from crewctl.transport.control import CONTROL_MAX_FRAME

SEED = 20261121


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def bad_frames(rng: random.Random) -> list[tuple[str, list[bytes]]]:
    """(what, frames) for every kind of bad message; each one should count as one drop."""
    valid = pack({"v": 1, "type": "hello", "name": "x", "lanes": [], "concurrency": 1, "instance": "i"})
    frames: list[tuple[str, list[bytes]]] = []
    for i in range(40):
        frames.append((f"random bytes #{i}", [rng.randbytes(rng.randint(1, 300))]))
    for cut in (1, len(valid) // 2, len(valid) - 1):
        frames.append((f"truncated at {cut}", [valid[:cut]]))
    frames.append(("nested past the codec's depth", [pack({"v": 1, "type": "hello", "x": nested(MAX_DEPTH + 2)})]))
    frames.append(("nested past msgpack's stack", [b"\x91" * 5000 + b"\x01"]))
    frames.append(("map claiming 4 billion entries", [b"\xdf" + struct.pack(">I", 2**32 - 1) + b"\xa1k\x01"]))
    frames.append(("array claiming 4 billion items", [b"\xdd" + struct.pack(">I", 2**32 - 1)]))
    frames.append(("map past the item bound", [msgpack.packb({f"k{i}": i for i in range(100_001)} | {"v": 1, "type": "hello"})]))
    frames.append(("string claiming 4 GiB", [b"\xdb" + struct.pack(">I", 2**32 - 1) + b"abc"]))
    frames.append(("not a map", [pack([1, "hello"])]))
    frames.append(("no version", [pack({"type": "hello"})]))
    frames.append(("version is a string", [pack({"v": "1", "type": "hello"})]))
    frames.append(("no type", [pack({"v": 1})]))
    frames.append(("two messages in a frame", [valid + valid]))
    frames.append(("trailing garbage", [valid + b"\xc1"]))
    frames.append(("an ext type", [msgpack.packb({"v": 1, "type": msgpack.ExtType(5, b"x")})]))
    frames.append(("three frames", [valid, valid, valid]))
    frames.append(("empty frame", [b""]))
    return frames


WRONG_VERSIONS = [0, 2, 99, -1, 2**40]


@pytest.mark.parametrize("endpoint_key", ["control", "listen"], ids=["control-router", "agents-router"])
def test_garbage_and_wrong_versions_are_dropped_and_counted_and_the_daemon_keeps_serving(tmp_path, endpoint_key):
    lead = write_agent(tmp_path, "lead", """
        marker("READY", {"summary": "nothing to do"})
    """)
    with Supervisor(tmp_path, args=["--heartbeat", "0.2"]) as sup:
        endpoint = sup.info()[endpoint_key]
        name = "control" if endpoint_key == "control" else "agents"
        door = [sup.info()["token"].encode()] if name == "control" else []
        cap = CONTROL_MAX_FRAME if name == "control" else MAX_FRAME
        frames = bad_frames(random.Random(SEED))
        # A frame past the endpoint's cap closes the connection (below), so those go apart.
        oversized = [parts for _, parts in frames if max(map(len, parts)) > cap]
        frames = [(what, parts) for what, parts in frames if max(map(len, parts)) <= cap]
        assert len(oversized) == (1 if name == "control" else 0)  # the 100,001-entry map
        before = status(sup)["dropped_frames"]
        with RawPeer(endpoint, **({} if name == "control" else peer_keys(sup, "fuzzer"))) as peer:
            for _, parts in frames:
                peer.send(*door, *parts)
            for v in WRONG_VERSIONS:
                peer.send(*door, pack({"v": v, "type": "request", "op": "status", "args": {}}))
            expected = len(frames) + len(WRONG_VERSIONS)
            wait_until(lambda: status(sup)["dropped_frames"][name] - before[name] >= expected, timeout=10,
                       message=f"{expected} drops on {name}")
            refusals = [m for m in peer.recv_all(timeout=0.5) if m.get("type") == "refused"]
            assert len(refusals) == len(WRONG_VERSIONS)
            assert all(r["speaks"] == [1] and "not spoken" in r["reason"] for r in refusals)
        # A peer whose frame exceeds the size bound is cut off by ZeroMQ before any decoding.
        for parts in [*oversized, [b"\x00" * (MAX_FRAME + 1)]]:
            with RawPeer(endpoint, **({} if name == "control" else peer_keys(sup, "fuzzer"))) as big:
                big.send(*door, *parts)
                assert big.wait_disconnected()
        after = status(sup)
        assert after["dropped_frames"][name] - before[name] == expected  # one count per bad frame
        other = "agents" if name == "control" else "control"
        assert after["dropped_frames"][other] == before[other]
        # ... and it still serves: hosts attach, goals run, the CLI answers.
        wait_for_host(sup, "local-1")
        goal = sup.new_goal("still alive", "--criterion", "trivial", "--check", "true", lead=lead)
        sup.wait_for_status(goal, "awaiting_signoff", timeout=20)
        assert "Traceback" not in sup.log()
