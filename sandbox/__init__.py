"""The sandbox every agent turn and every check command runs in (docs/contracts.md, "The sandbox").

One package owns what an agent can see and do on the operator's machine:

    Sandbox          the daemon's settings (mode, bwrap, [sandbox] writable/masked/readable,
                     env_allow), turned into a policy per role
    SandboxPolicy    what one process may see: its working directory read-write, a private
                     TMPDIR, masked paths, extra binds; JSON-able so a verifier host can carry it
    agent_env        the environment an agent or check starts from: an allowlist per brain
    seed_home        the verifier's fresh HOME: only its CLI's login and provider choice
                     (each tool's preset says which files: crewctl.brains.presets)
    probe            can a sandbox be made here, and how (for `crewctl run` and `doctor`)
    Ledger           every sandboxed process on record, so a restarted supervisor ends what
                     a killed one left before it reruns anything

`crewctl.brains.exec.run_bounded` is the one place a process is started; given a policy it
wraps the command with `SandboxPolicy.wrap`.
"""

from ._env import BASE_ALLOW, BRAIN_KEYS, agent_env, brain_kind, credential_env, seed_home, state_dirs
from ._ledger import Ledger
from ._policy import ROLES, SandboxPolicy
from ._probe import SandboxProbe, find_bwrap
from ._settings import MODES, Sandbox, probe

__all__ = [
    "BASE_ALLOW",
    "BRAIN_KEYS",
    "Ledger",
    "MODES",
    "ROLES",
    "Sandbox",
    "SandboxPolicy",
    "SandboxProbe",
    "agent_env",
    "brain_kind",
    "credential_env",
    "find_bwrap",
    "probe",
    "seed_home",
    "state_dirs",
]
