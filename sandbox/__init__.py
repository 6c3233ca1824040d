"""The sandbox every agent turn and every check command runs in (docs/contracts.md, "The sandbox").

One package owns what an agent can see and do on the operator's machine:

    Sandbox          the daemon's settings (mode, bwrap, [sandbox] writable/masked/readable,
                     env_allow), turned into a policy per role
    SandboxPolicy    what one process may see: its working directory read-write, a private
                     TMPDIR, masked paths, extra binds; JSON-able so a verifier host can carry it
    agent_env        the environment an agent or check starts from: an allowlist per brain
    seed_home        the verifier's fresh HOME: only its CLI's credentials file
    probe            can a sandbox be made here, and how (for `crewctl run` and `doctor`)
    Ledger           every sandboxed process on record, so a restarted supervisor ends what
                     a killed one left before it reruns anything

`crewctl.brains.exec.run_bounded` is the one place a process is started; given a policy it
wraps the command with `SandboxPolicy.wrap`.
"""

from ._env import AUTH_FILES, BASE_ALLOW, BRAIN_KEYS, agent_env, brain_kind, seed_home
from ._ledger import Ledger
from ._policy import ROLES, SandboxPolicy
from ._probe import SandboxProbe, find_bwrap
from ._settings import CLI_STATE, MODES, Sandbox, probe

__all__ = [
    "AUTH_FILES",
    "BASE_ALLOW",
    "BRAIN_KEYS",
    "CLI_STATE",
    "Ledger",
    "MODES",
    "ROLES",
    "Sandbox",
    "SandboxPolicy",
    "SandboxProbe",
    "agent_env",
    "brain_kind",
    "find_bwrap",
    "probe",
    "seed_home",
]
