"""The aider preset: its flags per role, parsing and failures, in one place."""

from __future__ import annotations

import os
import re
from typing import Sequence

from ...exceptions import BrainError
from ...goal import markers
from ..base import TurnReply, Usage
from ._base import _cost, _decode, _model_flag, _no_failure, _one_line, Preset, PROMPT_FILE_PLACEHOLDER

__all__ = ["PRESET"]

# ---------------------------------------------------------------------------------------------
# aider
#
# aider has no JSON output and no session id. `--message-file FILE` runs one message and exits;
# stdout is its transcript: a start-up banner ("Aider v…", "Model: …", "Git repo: …",
# "Repo-map: …"), the model's reply, then after each model call a line
# "Tokens: 1.2k sent[, N cache write][, N cache hit], 56 received." followed (same line or next)
# by "Cost: $0.00022 message, $0.00022 session." when aider knows the model's prices.
# What is parsed, honestly: the reply is stdout with those known banner and usage lines taken
# out (a heuristic; aider's own confirmations and edit notices stay in); token counts are
# aider's rounded display ("1.2k" = 1200), summed over every Tokens line; the cost is the last
# "session" figure (this process's total). Each turn starts a fresh chat: the chat and input
# history files go to the null device so nothing is written into the workspace for them.
# A reply cut at the model's output limit (finish_reason "length") prints no Tokens line:
# aider shows the reply, then "Model … has hit a token limit!" and its own estimates
# ("Input tokens: ~445 of 0"), then advice. That is still a reply (a marker cut in half is the
# marker parser's to refuse), counted at aider's estimate, the only figure it gives: on the
# local server an estimate of 445 was 705 by the server's count.


def _aider_args(role: str, model: str | None, _resume: str | None, extra: Sequence[str], prompt_file: str | None) -> list[str]:
    args = [
        "--no-pretty", "--no-stream", "--no-fancy-input",
        "--yes-always",  # stdin is empty: every confirmation must be answered by a flag
        "--no-check-update", "--no-show-release-notes", "--no-analytics", "--no-show-model-warnings",
        "--no-gitignore",  # do not add .aider* to the workspace's .gitignore
        # The operator's branch is not crewctl's to commit to: neither aider's edits nor the
        # "dirty" files it would commit before editing them (aider 0.86.2 does that even
        # with --no-auto-commits unless told --no-dirty-commits).
        "--no-auto-commits", "--no-dirty-commits",
        # The repo map writes its tags cache (.aider.tags.cache.v4/) into the workspace root,
        # with no flag to move it; that directory then travels into every snapshot. 0 turns
        # the map (and the cache) off.
        "--map-tokens", "0",
        "--input-history-file", os.devnull, "--chat-history-file", os.devnull,
    ]
    if role == "verifier":
        # ask mode answers questions without editing; --dry-run refuses to write files even if
        # asked; no lint/test runs, no shell-command suggestions, no URL fetching. --no-git: in
        # a snapshot (a plain copy) aider 0.86.2 would `git init` it and then see 0 files; the
        # snapshot's files are given to it read-only instead (`_aider_context`). aider itself
        # has no network switch beyond --no-detect-urls.
        args += ["--chat-mode", "ask", "--dry-run", "--no-git", "--no-auto-lint", "--no-auto-test",
                 "--no-suggest-shell-commands", "--no-detect-urls"]
    args += _model_flag("--model", model)
    args += list(extra)
    return args + ["--message-file", prompt_file or PROMPT_FILE_PLACEHOLDER]


# The verifier's snapshot, shown to aider as read-only chat files (--read), since with --no-git
# it sees no file it is not given. Bounded: a snapshot past these caps is shown in part, in
# sorted order, and the rest is named in none of aider's arguments (aider's own limit is the
# model's context window, which a whole repository would overflow anyway).
AIDER_READ_FILES = 200
AIDER_READ_BYTES = 512 * 1024
SNAPSHOT_FILES_PLACEHOLDER = "<snapshot files>"


def _aider_context(role: str, workdir: str | None) -> list[str]:
    if role != "verifier":
        return []
    if workdir is None:
        return ["--read", SNAPSHOT_FILES_PLACEHOLDER]
    args: list[str] = []
    total = 0
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if d != ".git" and not d.startswith(".aider"))
        for name in sorted(files):
            if name.startswith(".aider"):
                continue
            path = os.path.join(root, name)
            try:
                size = os.lstat(path).st_size
            except OSError:
                continue
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            if len(args) // 2 >= AIDER_READ_FILES or total + size > AIDER_READ_BYTES:
                return args
            total += size
            args += ["--read", os.path.relpath(path, workdir)]
    return args


_AIDER_TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.]+[kM]?) sent"
    r"(?:, (?P<write>[\d.]+[kM]?) cache write)?"
    r"(?:, (?P<hit>[\d.]+[kM]?) cache hit)?"
    r", (?P<received>[\d.]+[kM]?) received\."
)
_AIDER_LIMIT = re.compile(r"^Model .+ has hit a token limit!$")
_AIDER_ESTIMATE = re.compile(r"^(?P<which>Input|Output) tokens: ~(?P<n>\d+) of ")
_AIDER_COST = re.compile(r"Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.")
_AIDER_CHROME = re.compile(
    r"^(Aider v\d"
    r"|(Main |Weak |Editor )?[Mm]odel: "
    r"|Git repo: |Repo-map: |Tokens: |Cost: \$"
    r"|Update git (name|email) with: "
    r"|Added .+ to the chat( \(read-only\))?\.?$"  # the verifier's --read files say read-only
    r"|HTTPSConnectionPool\(host='raw\.githubusercontent\.com'"  # litellm's price-list fetch, offline
    r")"
)


def _aider_number(text: str | None) -> int:
    if not text:
        return 0
    scale = 1000 if text.endswith("k") else 1_000_000 if text.endswith("M") else 1
    try:
        return int(round(float(text.rstrip("kM")) * scale))
    except ValueError:
        return 0


def _aider_parse(stdout: bytes, _stderr: str, _resume: str | None) -> TurnReply:
    text = _decode(stdout)
    sent = received = hit = 0
    seen_tokens = False
    cost = None
    kept: list[str] = []
    cut_at_limit = False
    for line in text.splitlines():
        if cut_at_limit:
            estimate = _AIDER_ESTIMATE.match(line.strip())
            if estimate and not seen_tokens:
                if estimate["which"] == "Input":
                    sent += int(estimate["n"])
                else:
                    received += int(estimate["n"])
            continue  # the rest is aider's advice on token limits, not the model's words
        if _AIDER_LIMIT.match(line.strip()):
            cut_at_limit = True
            continue
        tokens = _AIDER_TOKENS.match(line.strip())
        if tokens:
            seen_tokens = True
            sent += _aider_number(tokens["sent"])
            hit += _aider_number(tokens["hit"])
            received += _aider_number(tokens["received"])
        priced = _AIDER_COST.search(line)
        if priced:
            cost = _cost(float(priced["session"]))
        if _AIDER_CHROME.match(line.strip()):
            continue
        kept.append(line)
    reply = "\n".join(kept).strip("\n")
    if not seen_tokens and not cut_at_limit:
        # aider prints model errors (auth, unknown model) to stdout and may still exit 0; a run
        # without a usage line made no successful model call.
        last = next((line for line in reversed(kept) if line.strip()), "no output")
        raise BrainError(f"aider printed no 'Tokens:' line, so no model call succeeded: {_one_line(last, 200)}")
    return TurnReply(text=reply, usage=Usage(input_tokens=sent, output_tokens=received, cached_tokens=hit, cost_usd=cost))


PRESET = Preset(
    name="aider",
    title="aider",
    command=("aider",),
    install="aider (python -m pip install aider-install && aider-install)",
    docs="https://aider.chat/docs/scripting.html",
    prompt_via="file",
    resumes=False,
    parses="plain stdout (no JSON): reply is stdout minus banner and usage lines; tokens from "
    "'Tokens: … sent, … received.' (rounded), cost from 'Cost: … session.'; no session id",
    verifier_isolation="--chat-mode ask --dry-run --no-git (the snapshot's files given as --read), "
    "no repo map or its cache, no lint/test/shell suggestions/URL fetching; aider has no network switch",
    build_args=_aider_args,
    parse=_aider_parse,
    failure=_no_failure,
    # TERM=dumb (every preset's default) makes aider 0.86.2 print "Detected dumb
    # terminal, disabling fancy input and pretty output." into every reply; with stdout
    # a pipe and --no-pretty it prints no escape codes under any other TERM. Its rich
    # console wraps at COLUMNS (80 when unset), which split a READY/VERIFY JSON line:
    # wider than the longest marker body, no line a marker can hold is wrapped.
    env={"TERM": "xterm", "COLUMNS": str(markers.BODY_LIMIT + 1024)},
    context_args=_aider_context,
    credential_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_API_BASE", "GEMINI_API_KEY",
                    "AIDER_MODEL", "AIDER_OPENAI_API_BASE", "AIDER_OPENAI_API_KEY", "AIDER_ANTHROPIC_API_KEY"),
    state_dirs=(".aider", ".cache/aider"),
    # Its settings files name the model, the API base and model metadata; chat history lives
    # in the workspace (and crewctl sends it to the null device).
    home_files=(".aider.conf.yml", ".aider.model.settings.yml", ".aider.model.metadata.json"),
)
