"""The dispatcher: turns queued plan steps into tasks for agent hosts.

Interface used by the goal supervisors and the daemon:
    Enqueue(goal_id, effect, workspace, spec, reply_to)   queue a step's task
    CancelGoal(goal_id)                                    withdraw a goal's queued and running tasks
    "hosts"  (ask)                                         attached hosts, for `crewctl status`
Results go back to the goal's supervisor as Deliver(StepAssigned | StepFinished | StepFailed).
"""

from __future__ import annotations

from dataclasses import dataclass

import pykka

from ..goal.effects import DispatchStep

__all__ = ["CancelGoal", "Enqueue"]


@dataclass(frozen=True)
class Enqueue:
    goal_id: str
    effect: DispatchStep
    workspace: str
    spec: str | None
    reply_to: pykka.ActorRef


@dataclass(frozen=True)
class CancelGoal:
    goal_id: str


def start_dispatcher(ctx, broker, opts):
    """Start the dispatcher and the local agent hosts; None until the crew lands."""
    return None
