"""The layers import only downwards: what each package may import, pinned.

The rules are the architecture (docs/architecture.md): `goal/` is the pure core and knows
nothing of storage, processes or sockets; `store/` persists the core's values; `transport/`
moves bytes and knows no agents (the agent host, which runs brains, lives in actors/);
the shells (`actors/`, `cli/`) may use everything. A new import that crosses a line fails
here, with the file and the line, before it becomes a tangle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# package -> the crewctl packages/modules it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "goal": {"exceptions"},
    "store": {"goal", "exceptions", "home"},
    "transport": {"exceptions", "home"},
    # brains <-> sandbox: a brain runs its process in the policy the sandbox made, and the
    # sandbox asks each tool's preset which of its files a fresh HOME needs.
    "brains": {"goal", "exceptions", "config", "sandbox"},
    "sandbox": {"exceptions", "config", "brains"},
    # outputs: the envelope writes under the goal's directory, named in actors.runtime.
    "outputs": {"goal", "exceptions", "config", "actors.runtime"},
}


def _imports(path: pathlib.Path, package: str) -> list[tuple[int, str]]:
    """(line, crewctl module) for each import in the file, relative or absolute."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # the file's package
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
                if not node.module:
                    found += [(node.lineno, ".".join([*target, a.name])) for a in node.names]
                    continue
            elif node.module and node.module.startswith("crewctl."):
                target = node.module.split(".")[1:]
            else:
                continue
            found.append((node.lineno, ".".join(target)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".", 1)[1]) for a in node.names if a.name.startswith("crewctl.")]
    return found


def _allowed(package: str, module: str) -> bool:
    if module.split(".")[0] == package:
        return True
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[package])


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports crewctl.{module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in _imports(path, package)
        if not _allowed(package, module)
    ]
    assert crossings == [], "\n".join(crossings)


def test_the_import_reader_sees_a_crossing() -> None:
    # The rule above can only fail if _imports finds relative imports: prove it on the
    # file that used to break it (the agent host, once in transport/, ran brains).
    host = ROOT / "actors" / "agent_host.py"
    modules = {m for _, m in _imports(host, "actors")}
    assert {"brains", "transport", "transport.wake"} <= modules
    assert not _allowed("transport", "brains")
