"""Benchmark: crewctl.goal.markers.extract beside markdown-it-py on the same replies.

    .venv/bin/python bench/markers.py

markdown-it-py's CommonMark parser is the baseline because it is the obvious way to
find fenced code in a reply: extract must be at least 10 times as fast as it, and grow
linearly with the reply (8 MiB takes about 8 times as long as 1 MiB). Replies are
generated from a fixed seed in four flavours:

    prose   paragraphs, headings, lists, a little non-ASCII
    code    long code blocks in fences, indented lines, inline backticks
    fences  a fence every few lines: backtick and tilde, lengths 3-6, info strings
    tags    tag-like lines that are not tags (indented, quoted, inline, unknown kinds,
            stray closing tags), real small blocks, and blocks quoted in fences
"""

from __future__ import annotations

import gc
import json
import platform
import random
import sys
import time

from markdown_it import MarkdownIt

from crewctl.goal.markers import extract

KIB, MIB = 1024, 1024 * 1024
SIZES = [("64 KiB", 64 * KIB), ("1 MiB", MIB), ("8 MiB", 8 * MIB)]
# (extract, markdown-it) repeats per size: markdown-it takes seconds on 8 MiB
REPEATS = {64 * KIB: (50, 5), MIB: (15, 2), 8 * MIB: (7, 1)}

WORDS = (
    "the a gate round lead worker verifier criteria plan step lane budget token snapshot "
    "commit test passes fails evidence summary objective operator steer resume pause "
    "naïve café über 漢字 → — ok done run check"
).split()


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."


def _paragraph(rng: random.Random) -> list[str]:
    text = " ".join(_sentence(rng) for _ in range(rng.randint(2, 6)))
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) > 78:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line, ""]


def _code_line(rng: random.Random) -> str:
    indent = "    " * rng.randint(0, 3)
    return indent + rng.choice(
        [
            f"x_{rng.randint(0, 99)} = compute(`{rng.choice(WORDS)}`, {rng.randint(0, 999)})",
            f"if result.status == {rng.randint(0, 9)!r}:",
            f"return [item for item in {rng.choice(WORDS)}s if item]",
            f"# {_sentence(rng)}",
            "",
        ]
    )


def _small_block(rng: random.Random) -> list[str]:
    kind, body = rng.choice(
        [
            ("READY", {"summary": _sentence(rng), "evidence": [_sentence(rng)]}),
            ("BLOCKED", {"reason": _sentence(rng)}),
            ("PLAN", {"steps": [{"title": _sentence(rng)[:60], "lane": "py"} for _ in range(3)]}),
            ("LOCK", {"criteria": [{"text": _sentence(rng), "verify": {"run": "pytest -q"}}]}),
            ("VERIFY", {"results": [{"id": f"c{n}", "verdict": "pass", "evidence": "ok"} for n in range(3)]}),
        ]
    )
    return [f"CREW_{kind}_BEGIN", json.dumps(body, ensure_ascii=False), f"CREW_{kind}_END"]


def _prose(rng: random.Random) -> list[str]:
    pick = rng.random()
    if pick < 0.1:
        return [f"## {_sentence(rng)}", ""]
    if pick < 0.25:
        return [f"- {_sentence(rng)}" for _ in range(rng.randint(2, 5))] + [""]
    return _paragraph(rng)


def _code(rng: random.Random) -> list[str]:
    if rng.random() < 0.3:
        return _paragraph(rng)
    return ["```python"] + [_code_line(rng) for _ in range(rng.randint(20, 60))] + ["```", ""]


def _fences(rng: random.Random) -> list[str]:
    char = rng.choice("`~")
    fence = " " * rng.randint(0, 3) + char * rng.randint(3, 6)
    info = rng.choice(["", "json", " python", "text {.x}"])
    body = [_code_line(rng) for _ in range(rng.randint(1, 4))]
    return [fence + info] + body + [fence.strip(), rng.choice(["", _sentence(rng)])]


def _tags(rng: random.Random) -> list[str]:
    kind = rng.choice(["READY", "LOCK", "PLAN", "CLARIFY", "VERIFY", "BLOCKED", "DONE"])
    pick = rng.random()
    if pick < 0.2:
        return _small_block(rng)
    if pick < 0.3:
        return ["```"] + _small_block(rng) + ["```"]
    return [
        rng.choice(
            [
                f" CREW_{kind}_BEGIN",
                f"> CREW_{kind}_BEGIN",
                f"Then I will emit CREW_{kind}_BEGIN when done.",
                f"CREW_{kind}_BEGIN now",
                f"CREW_{kind}_END",
                "CREW_DONE_BEGIN",
                f"crew_{kind.lower()}_begin",
                _sentence(rng),
            ]
        )
    ]


FLAVOURS = {"prose": _prose, "code": _code, "fences": _fences, "tags": _tags}


def reply(flavour: str, size: int) -> str:
    """A deterministic reply of `size` UTF-8 bytes, cut at the end of a line."""
    rng = random.Random(f"{flavour}-{size}")
    make, parts, total = FLAVOURS[flavour], [], 0
    while total < size:
        for line in make(rng):
            parts.append(line + "\n")
            total += len(line.encode()) + 1
    data = "".join(parts).encode()[:size]
    return data.decode("utf-8", "ignore")


def best(fn, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    md = MarkdownIt("commonmark")
    print(f"python {platform.python_version()} on {platform.machine()}, markdown-it-py baseline, best of N")
    print(f"{'size':>7} {'flavour':<7} {'markers':>7} {'extract MiB/s':>14} {'markdown-it MiB/s':>18} {'speed-up':>9}")
    seconds: dict[tuple[str, int], float] = {}
    worst = float("inf")
    for label, size in SIZES:
        ours, theirs = REPEATS[size]
        for flavour in FLAVOURS:
            text = reply(flavour, size)
            mib = len(text.encode()) / MIB
            found = len(extract(text).markers)
            t_extract = best(extract, text, ours)
            t_md = best(md.parse, text, theirs)
            seconds[flavour, size] = t_extract
            ratio = t_md / t_extract
            worst = min(worst, ratio)
            print(
                f"{label:>7} {flavour:<7} {found:>7} {mib / t_extract:>14.1f} {mib / t_md:>18.2f} {ratio:>8.0f}×"
            )
    print()
    print("growth of extract time, 1 MiB -> 8 MiB (linear = 8.0):")
    growths = []
    for flavour in FLAVOURS:
        growth = seconds[flavour, 8 * MIB] / seconds[flavour, MIB]
        growths.append(growth)
        print(f"  {flavour:<7} {growth:5.2f}")
    linear = all(growth < 8 * 1.5 for growth in growths)
    print()
    print(f"slowest speed-up {worst:.0f}× (target ≥ 10×): {'met' if worst >= 10 else 'MISSED'}")
    print(f"growth {'linear' if linear else 'NOT LINEAR'} (every flavour under 12 for 8× the input)")
    return 0 if worst >= 10 and linear else 1


if __name__ == "__main__":
    sys.exit(main())
