"""What a finished goal leaves on disk: memory, skills, the PR envelope; and templates.

The imperative shell of goal.memory, goal.skills, goal.envelope and goal.templates: files
under $CREWCTL_HOME (memory/, skills/, goals/<id>/pr.md) and the operator's config
directory (templates/), and git plumbing that never touches the user's branch, index or
working tree. May import goal (and the leaf crewctl.actors.runtime for paths).
"""

from __future__ import annotations

__all__ = ["briefing_for"]


def briefing_for(home: str, workspace: str) -> str:
    """Memory of `workspace` and the skills in `home`, as the first lead prompt gets them."""
    from ..goal.briefing import briefing
    from . import memory, skills

    listed = [(s.name, s.description) for s in skills.listing(home) if s.description]
    return briefing(memory.read(home, workspace), listed)
