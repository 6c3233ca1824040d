"""The operator's authority: the control endpoint, the home and the database are the operator's alone.

Attacks first, through the real `crewctl run` and real sockets: floods and forged requests
without the token; then where the socket and the files live, and who may read them.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from crewctl.testing import Supervisor, run_cli, wait_until, write_agent
from crewctl.testing.hosts import RawPeer, status
from crewctl.transport import control
from crewctl.transport.codec import message, pack

BIG = 16 * 1024 * 1024
TOKEN_REASONS = {"no control token", "bad control token"}


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def request(op: str, **args) -> bytes:
    return pack(message("request", id=1, op=op, args=args))


def test_floods_without_the_token_are_never_decoded_and_status_still_answers(tmp_path):
    with Supervisor(tmp_path) as sup:
        endpoint = sup.info()["control"]
        before = status(sup)
        # Four 16 MiB frames, with no token and with a wrong one: each connection is cut by
        # the 64 KiB cap inside ZeroMQ, before anything is buffered or read.
        floods = [RawPeer(endpoint) for _ in range(4)]
        try:
            for i, peer in enumerate(floods):
                peer.send(*([] if i % 2 else [b"not the token"]), b"\x00" * BIG)
            for peer in floods:
                assert peer.wait_disconnected(), "the supervisor kept a connection that sent 16 MiB"
        finally:
            for peer in floods:
                peer.close()
        # Small frames with no token, a wrong one or an empty one, some of them well-formed
        # requests an operator could have sent, some garbage no decoder would take.
        forged = [
            [b"\xc1garbage"],
            [request("goal.new", objective="forged", workspace=str(tmp_path))],
            [b"not the token", request("goal.new", objective="forged", workspace=str(tmp_path))],
            [b"", request("status")],
            [sup.info()["token"].encode()[:-1], b"\x91" * 5000 + b"\x01"],
            [b"not the token", b"\xdf\xff\xff\xff\xff"],
        ]
        with RawPeer(endpoint) as peer:
            for parts in forged:
                peer.send(*parts)
            wait_until(lambda: status(sup)["dropped_frames"]["control"] - before["dropped_frames"]["control"] >= len(forged),
                       timeout=10, message="every forged frame counted")
            answers = peer.recv_all(timeout=0.5)
        done = sup.cli("status", "--json")  # the operator is answered as ever
        after = done.json()
        assert after["dropped_frames"]["control"] - before["dropped_frames"]["control"] == len(forged)
        reasons = after["dropped_reasons"]["control"]
        assert set(reasons) == TOKEN_REASONS and sum(reasons.values()) == len(forged)  # none got as far as decoding
        assert [a["type"] for a in answers] == ["refused"] * len(forged)
        assert all("control token" in a["reason"] for a in answers)
        assert sup.cli("goal", "list", "--json").json() == []  # no forged goal.new ran
        assert "Traceback" not in sup.log()


def test_a_request_past_the_cap_is_refused_by_the_cli_before_it_is_sent(tmp_path):
    with Supervisor(tmp_path) as sup:
        done = sup.cli("goal", "new", "x" * (control.CONTROL_MAX_FRAME + 1), "--lead", "scripted:/dev/null", check=False)
        assert done.code == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("crewctl: the request is ")
        assert lines[0].endswith("bytes; the supervisor takes at most 64 KiB")
        assert status(sup)["dropped_frames"]["control"] == 0


@pytest.mark.parametrize("home_name", ["home", "h" * 100], ids=["short-home", "home-too-long-for-a-socket-path"])
def test_the_control_socket_lives_in_a_0700_directory_and_the_home_and_database_are_private(tmp_path, home_name):
    home = str(tmp_path / home_name)
    os.makedirs(home, mode=0o755)
    os.chmod(home, 0o755)  # made by someone else's `mkdir`: crewctl tightens it
    lead_reply = tmp_path / "lead.json"
    lead_reply.write_text(json.dumps({"lead": ['CREW_READY_BEGIN\n{"summary": "ok"}\nCREW_READY_END']}))
    with Supervisor(tmp_path, home=home) as sup:
        endpoint = sup.info()["control"]
        assert endpoint.startswith("ipc://")
        socket_path = endpoint[len("ipc://"):]
        directory = os.path.dirname(socket_path)
        assert directory == control.run_dir(home)
        if len(home_name) < 10:
            assert directory == os.path.join(home, "run")
        else:  # past the unix socket path limit: a short directory of our own under /tmp
            assert not directory.startswith(home) and len(socket_path) <= control.MAX_IPC_PATH
            parent = os.path.dirname(directory)
            assert os.stat(parent).st_uid == os.getuid() and mode(parent) == 0o700
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
        assert mode(directory) == 0o700
        goal = sup.new_goal("write something", "--criterion", "c", "--check", "true", lead=f"scripted:{lead_reply}",
                            workspace=str(tmp_path))
        sup.wait_for_status(goal, "awaiting_signoff")
        db = os.path.join(home, "crew.db")
        assert mode(home) == 0o700
        for path in (db, db + "-wal", db + "-shm", os.path.join(home, "daemon.json"), os.path.join(home, "keys", "server.key_secret")):
            assert mode(path) == 0o600, path
        assert mode(os.path.join(home, "keys")) == 0o700


# A lead that looks for the control socket from inside its sandbox and tries to connect.
LOOK_FOR_THE_SOCKET = """
import socket
path = SOCKET
seen = {"exists": os.path.exists(path)}
try:
    seen["listing"] = os.listdir(os.path.dirname(path))
except OSError as exc:
    seen["listing"] = type(exc).__name__
try:
    socket.socket(socket.AF_UNIX).connect(path)
    seen["connect"] = "connected"
except OSError as exc:
    seen["connect"] = type(exc).__name__
with open("seen.json", "w") as f:
    json.dump(seen, f)
marker("READY", {"summary": "looked around"})
"""


@pytest.mark.parametrize("home_name", ["home", "h" * 100], ids=["short-home", "home-too-long-for-a-socket-path"])
def test_an_agent_can_neither_see_nor_reach_the_control_socket(tmp_path, ws, home_name):
    with Supervisor(tmp_path, home=str(tmp_path / home_name)) as sup:
        socket_path = sup.info()["control"][len("ipc://"):]
        lead = write_agent(tmp_path, "lead", f"SOCKET = {socket_path!r}\n" + LOOK_FOR_THE_SOCKET)
        goal = sup.new_goal("look", "--criterion", "c", "--check", "true", lead=lead, workspace=ws)
        sup.wait_for_status(goal, "awaiting_signoff")
        assert "unsandboxed" not in sup.event_types(goal)
        with open(os.path.join(ws, "seen.json")) as f:
            seen = json.load(f)
        assert seen == {"exists": False, "listing": seen["listing"], "connect": "FileNotFoundError"}
        # Its directory is an empty mask, or (inside the masked home) shows only the turn's
        # own scratch that the sandbox binds there.
        assert seen["listing"] == "FileNotFoundError" or os.path.basename(socket_path) not in seen["listing"]
        assert os.path.exists(socket_path)  # while the operator's CLI reaches it as ever
        assert status(sup)["daemon"]["pid"] == sup.pid


def test_an_existing_database_left_readable_is_tightened_at_start(tmp_path):
    with Supervisor(tmp_path) as sup:
        pass
    db = os.path.join(sup.home, "crew.db")
    for path in (db, db + "-wal", db + "-shm"):
        if os.path.exists(path):
            os.chmod(path, 0o644)
    os.chmod(db, 0o644)
    with Supervisor(tmp_path, home=sup.home):
        assert mode(db) == 0o600
        for path in (db + "-wal", db + "-shm"):
            assert not os.path.exists(path) or mode(path) == 0o600, path


def test_tcp_control_answers_the_right_token_and_refuses_a_wrong_one(tmp_path):
    with Supervisor(tmp_path, args=["--control", "tcp://127.0.0.1:0"]) as sup:
        endpoint = sup.info()["control"]
        assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":0")
        assert status(sup)["daemon"]["control"] == endpoint  # the CLI, with daemon.json's token
        with RawPeer(endpoint) as peer:
            peer.send(b"0" * 32, request("status"))
            refused = peer.recv(timeout=10)
            assert refused["type"] == "refused" and "bad control token" in refused["reason"]
            peer.send(sup.info()["token"].encode(), request("status"))
            reply = peer.recv(timeout=10)
            assert reply["type"] == "reply" and reply["ok"] and reply["result"]["daemon"]["pid"] == sup.pid
        info_path = os.path.join(sup.home, "daemon.json")
        info = sup.info()
        with open(info_path, "w") as f:
            json.dump(info | {"token": "0" * 32}, f)
        try:
            done = run_cli(sup.home, "status")
        finally:
            with open(info_path, "w") as f:
                json.dump(info, f)
        assert done.code == 3, done
        assert len(done.stderr.strip().splitlines()) == 1 and "bad control token" in done.stderr
        assert status(sup)["dropped_reasons"]["control"] == {"bad control token": 2}


@pytest.mark.parametrize("endpoint", ["udp://127.0.0.1:1", "tcp://127.0.0.1", "ipc://@abstract", "inproc://x"])
def test_a_control_endpoint_crewctl_cannot_secure_is_a_usage_error(tmp_path, endpoint):
    done = run_cli(str(tmp_path / "home"), "run", "--control", endpoint, timeout=30)
    assert done.code == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crewctl: --control") and "Traceback" not in done.stderr
    assert not os.path.exists(os.path.join(tmp_path, "home", "crew.db"))
