"""Every error crewctl raises on purpose, in one hierarchy.

    CrewError                      anything crewctl raises deliberately
    ├── UsageError                 bad input from the operator (exit 2)
    ├── NotFound                   no such goal, step, brain... (exit 1)
    ├── Refused                    the goal's rules say no: wrong status, stale seq (exit 3)
    ├── NoSupervisor               no daemon answers on the control endpoint (exit 4)
    ├── StoreError                 the database cannot be used as it is (exit 1)
    │   └── SchemaTooNew           written by a newer crewctl
    ├── AlreadyRunning             a second supervisor on the same home (exit 1)
    ├── ConfigError                the config file or a brain spec is wrong (exit 1)
    ├── SandboxUnavailable         the sandbox is on and none can be made here (exit 1)
    ├── ProtocolError              a wire frame that does not decode or has the wrong shape
    └── BrainError                 a turn failed in the brain (retried with backoff)
        ├── BrainConfigError       it will never work as configured: 401, 404, no such binary
        ├── UsageLimited           the provider's usage or rate limit; back off longer
        └── BrainCrashed           the brain died (signal, unexpected exception): fresh session

The CLI turns each into one line on stderr and the exit code shown; nothing else reaches
a user as a traceback.
"""

from __future__ import annotations

__all__ = [
    "from_wire",
    "AlreadyRunning",
    "BrainConfigError",
    "BrainCrashed",
    "BrainError",
    "ConfigError",
    "CrewError",
    "NoSupervisor",
    "NotFound",
    "ProtocolError",
    "Refused",
    "SandboxUnavailable",
    "SchemaTooNew",
    "StoreError",
    "UsageError",
    "UsageLimited",
    "WaitTimeout",
    "turn_failure_kind",
]


class CrewError(Exception):
    """Base of every deliberate crewctl error. `code` names it on the wire."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(CrewError):
    code = "usage"
    exit_code = 2


class NotFound(CrewError):
    code = "not_found"
    exit_code = 1


class Refused(CrewError):
    code = "refused"
    exit_code = 3


class NoSupervisor(CrewError):
    code = "no_supervisor"
    exit_code = 4


class WaitTimeout(CrewError):
    """`goal wait` gave up: what it waited for did not happen within --timeout."""

    code = "timeout"
    exit_code = 5


class StoreError(CrewError):
    code = "store"


class SchemaTooNew(StoreError):
    code = "schema_too_new"


class AlreadyRunning(CrewError):
    code = "already_running"


class ConfigError(CrewError):
    code = "config"
    turn_kind = "config"  # a brain spec or config that can never work: the turn is not retried


class SandboxUnavailable(CrewError):
    """`crewctl run` with the sandbox on, where bwrap is missing or cannot make namespaces."""

    code = "sandbox"


class ProtocolError(CrewError):
    code = "protocol"


class BrainError(CrewError):
    """A failed turn. `turn_kind` tells the phase machine how to treat it (goal.events.TurnFailed)."""

    code = "brain"
    retryable = True
    turn_kind = "error"  # retried with backoff, then the goal blocks with the error


class BrainConfigError(BrainError):
    code = "brain_config"
    retryable = False
    turn_kind = "config"


class UsageLimited(BrainError):
    code = "usage_limited"
    turn_kind = "usage_limited"  # backs off longer; past a bound the goal is usage_limited

    def __init__(self, message: str, resets_at: float | None = None) -> None:
        super().__init__(message)
        # When the provider says the account's limit resets (epoch seconds), if it says:
        # the goal then waits until that time and goes on by itself.
        self.resets_at = resets_at


class BrainCrashed(BrainError):
    code = "brain_crashed"
    turn_kind = "crashed"  # the role restarts in a fresh session


def turn_failure_kind(exc: BaseException) -> str:
    """How a failed turn is treated: any exception crewctl did not expect is a crash."""
    return getattr(exc, "turn_kind", "crashed")


def from_wire(code: str, message: str) -> CrewError:
    """Rebuild a typed error from a control-RPC error reply."""
    for cls in _WIRE_CLASSES:
        if cls.code == code:
            return cls(message)
    return CrewError(message)


_WIRE_CLASSES = (
    UsageError,
    NotFound,
    Refused,
    NoSupervisor,
    StoreError,
    SchemaTooNew,
    AlreadyRunning,
    ConfigError,
    SandboxUnavailable,
    ProtocolError,
    BrainError,
    BrainConfigError,
    UsageLimited,
    BrainCrashed,
)
