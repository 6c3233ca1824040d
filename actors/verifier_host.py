"""The verifier's own process: `python -m crewctl.actors.verifier_host`.

Started fresh for every gate round with a scrubbed environment and the round's snapshot as
its working directory; it knows nothing but what arrives on stdin. It reads one JSON job
per line and writes one JSON result per line, serving the round's turns (the verdict and at
most one corrective turn) in one brand-new session, then exits when stdin closes.

    job:    {"spec", "prompt", "goal", "session", "turn", "round", "timeout", "sandbox", "config"}
    result: {"ok": true, "text", "usage", "pid"} | {"ok": false, "error", "kind", "pid"}

The host is crewctl's own code and runs outside the sandbox; the brain process it starts
runs inside the job's sandbox (crewctl.sandbox). `--parent PID` ties the host to its
supervisor: the kernel kills it when the supervisor dies, however it dies, so a verifier
never outlives the run that started it (and its sandbox dies with it).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own kill is what remains
        return
    if os.getppid() != parent:  # the supervisor died before the request took hold
        os._exit(1)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--parent" and sys.argv[2].isdigit():
        _die_with(int(sys.argv[2]))
    # Imports inside main: the process starts from a scrubbed environment, and a broken
    # install should still produce one JSON line the daemon can read.
    from ..brains import Message, TurnRequest, resolve
    from ..config import Config
    from ..exceptions import CrewError, turn_failure_kind
    from ..sandbox import SandboxPolicy

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing a brain prints may corrupt the result channel
    history: list[Message] = []
    for line in sys.stdin:
        try:
            job = json.loads(line)
            config = Config(**job.get("config") or {})
            brain = resolve(job["spec"], config)
            request = TurnRequest(
                role="verifier",
                goal_id=job["goal"],
                session_id=job["session"],
                turn=int(job["turn"]),
                prompt=job["prompt"],
                workdir=os.getcwd(),
                round=int(job["round"]),
                timeout=job.get("timeout"),
                history=tuple(history) if getattr(brain, "wants_history", False) else (),
                sandbox=SandboxPolicy.from_dict(job["sandbox"]) if job.get("sandbox") else None,
            )
            reply = brain.run(request)
            history += [Message("user", job["prompt"]), Message("assistant", reply.text)]
            result = {"ok": True, "text": reply.text, "usage": reply.usage.as_dict(), "pid": os.getpid()}
        except Exception as exc:  # a bug here is a crashed verifier, reported, not a hang
            error = str(exc) if isinstance(exc, CrewError) else f"{type(exc).__name__}: {exc}"
            result = {"ok": False, "error": error, "kind": turn_failure_kind(exc), "pid": os.getpid()}
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
