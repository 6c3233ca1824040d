"""The pure domain: the phase machine, markers, criteria, prompts, views.

No I/O, no threads, no clock reads (time is passed in). Imports the standard library and
crewctl.exceptions (plain exception classes) only, so every rule here is testable with
nothing running.
"""
