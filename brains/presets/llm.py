"""The llm preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import os
import json
from typing import Sequence

from ...exceptions import BrainError
from ..base import TurnReply, Usage
from ._base import copy_home_files, _count, _decode, _model_flag, _no_failure, _one_line, Preset

__all__ = ["PRESET"]

# ---------------------------------------------------------------------------------------------
# llm: Simon Willison's llm
#
# `llm prompt --json` (llm 0.36) reads the prompt from stdin when no argument is given and
# prints the logged response rows as a JSON array, the same shape as `llm logs --json`:
# [{"response": TEXT, "conversation_id": ID, "input_tokens": n, "output_tokens": n,
#   "token_details": {...} | null, ...}]. `--cid ID` continues a conversation; `--log` makes sure
# it is logged (a user may have run `llm logs off`), or the next turn could not continue it.
# Older llm without --json fails with its own "No such option" message. llm reports no cost.
# (`--usage` would print "Token usage: 3 input, 14 output" on stderr instead; --json carries the
# same counts, so it is not used.)


def _llm_args(role: str, model: str | None, resume: str | None, extra: Sequence[str], _pf: str | None) -> list[str]:
    if role == "verifier":
        # llm offers the model no tools unless -T/--functions name some, so a verifier turn has
        # no write or network tools by construction; --no-log: it is never continued.
        args = ["--json", "--no-log"]
    else:
        args = ["--json", "--log"]
    args += _model_flag("--model", model)
    if resume and role != "verifier":
        args += ["--cid", resume]
    return args + list(extra)


def _llm_parse(stdout: bytes, _stderr: str, resume: str | None) -> TurnReply:
    text = _decode(stdout).strip()
    try:
        rows = json.loads(text)
    except ValueError:
        raise BrainError(f"llm output is not JSON: {_one_line(text or '(empty)', 120)}") from None
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise BrainError("llm JSON is not a list of response rows")
    last = rows[-1]
    if not isinstance(last.get("response"), str):
        raise BrainError("llm JSON row has no 'response' text")
    usage = Usage()
    for row in rows:
        details = row.get("token_details") if isinstance(row.get("token_details"), dict) else {}
        prompt_details = details.get("prompt_tokens_details") if isinstance(details.get("prompt_tokens_details"), dict) else {}
        # Plugins put cache counts in token_details in their provider's words.
        cached = _count(prompt_details.get("cached_tokens")) + _count(details.get("cache_read_input_tokens"))
        usage = usage + Usage(_count(row.get("input_tokens")), _count(row.get("output_tokens")), cached)
    conversation = last.get("conversation_id")
    return TurnReply(
        text=last["response"],
        usage=usage,
        resume_ref=conversation if isinstance(conversation, str) and conversation else resume,
    )



LLM_DIR = ".config/io.datasette.llm"
# Keys, the OpenAI-compatible models added by the user (llm fails "Unknown model" without it)
# and the default model. Not logs.db: every conversation the lead had is in it.
LLM_PROVIDER_FILES = ("keys.json", "extra-openai-models.yaml", "default_model.txt")


def _llm_seed(source_home: str, fresh_home: str) -> list[str]:
    # Copied to the default place in the fresh HOME: the verifier's environment has no
    # LLM_USER_PATH (it would point at the operator's own logs).
    source = os.environ.get("LLM_USER_PATH") or os.path.join(source_home, LLM_DIR)
    copied = copy_home_files(source, os.path.join(fresh_home, LLM_DIR), LLM_PROVIDER_FILES)
    return [f"{LLM_DIR}/{name}" for name in copied]

PRESET = Preset(
    name="llm",
    title="llm (Simon Willison)",
    command=("llm", "prompt"),
    install="llm (python -m pip install llm)",
    docs="https://llm.datasette.io/en/stable/usage.html",
    prompt_via="stdin",
    resumes=True,
    parses="--json rows: text from the last row's response, usage from input_tokens/output_tokens, "
    "session from conversation_id; no cost",
    verifier_isolation="no tools at all (llm gives the model none unless -T names them), --no-log",
    build_args=_llm_args,
    parse=_llm_parse,
    failure=_no_failure,
    # LLM_USER_PATH: a lead or worker keeps its conversations where the operator put them (a
    # verifier never gets it: Sandbox.for_verifier drops the state_env names).
    credential_env=("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLM_USER_PATH"),
    state_dirs=(".config/io.datasette.llm",),
    state_env=("LLM_USER_PATH",),
    # Keys, the OpenAI-compatible models the user added, the default model; never logs.db,
    # which holds every conversation. (`seed` reads them from LLM_USER_PATH when it is set.)
    seed=_llm_seed,
)
