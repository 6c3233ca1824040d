"""The pure domain: the phase machine, markers, criteria, prompts, views.

No I/O, no threads, no clock reads (time is passed in). Imports the standard library and
crewctl.exceptions (plain exception classes) only, so every rule here is testable with
nothing running.
"""

# A namespace of modules (goal.phases, goal.markers, ...), each with its own __all__;
# nothing is re-exported here, so an import names the module a rule lives in.
__all__: list[str] = []
