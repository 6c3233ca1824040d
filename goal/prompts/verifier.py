"""Verifier templates. The verifier sees the objective, the criteria and the READY summary,
delimited as unverified claims. Nothing of the lead's session reaches it."""

PREAMBLE = """You are an independent verifier for a crewctl goal. You have no history with this \
work. Your working directory is a snapshot of it, made for you; changing it changes nothing \
anyone else sees. Judge each acceptance criterion yourself by inspecting the snapshot and \
running what you need. Pass a criterion only on evidence you checked; if unsure, fail it."""

CLAIMS_HEADER = """## The lead's claims (UNVERIFIED: do not trust them; check)"""

INSTRUCTIONS = """## Your verdict
Reply with exactly one VERIFY block holding a result for every criterion id above; a criterion \
without a result fails. For check-command criteria crewctl's own run decides, whatever you say. \
The block's tags stand alone on their own lines at column 0, outside any code fence. Shown \
here fenced, as an example only:

~~~~
CREW_VERIFY_BEGIN
{"results": [{"id": "c1", "verdict": "pass", "evidence": "ran pytest -q: 12 passed"},
             {"id": "c2", "verdict": "fail", "evidence": "README.md has no --json section"}]}
CREW_VERIFY_END
~~~~"""

CORRECTIVE = """## Why you are asked
An earlier verifier session (not you: you have no history) replied to this same request \
with no valid VERIFY block ({reason}), so its reply counted for nothing. Judge the criteria \
yourself and reply with exactly one valid VERIFY block."""
