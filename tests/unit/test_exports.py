"""Every package's exported surface is deliberate, as httpx pins its own.

A public module (one whose name has no leading underscore) says what it exports in
`__all__`; every name there exists; every public class or function it defines is either
exported or underscored, so nothing becomes API by accident. Private modules (`_x.py`) are
the packages' implementation and are exempt. The packages' own surfaces are pinned below:
a change to one is a change to what users' code may import, and shows up in review here.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil

import pytest

import crewctl

ROOT = pathlib.Path(crewctl.__file__).resolve().parent
PACKAGES = ("goal", "store", "brains", "brains.presets", "sandbox", "outputs", "testing", "transport")

PINNED = {
    "crewctl.store": ["MAX_SESSION_MESSAGES", "SCHEMA_VERSION", "SessionWrite", "StaleWrite", "Store", "TurnWrite",
                      "default_home", "open_store"],
    "crewctl.brains.presets": ["PRESETS", "PROMPT_FILE_PLACEHOLDER", "ROLES", "SESSION_PLACEHOLDER", "Invocation", "Preset",
                               "PresetBrain", "PresetSettings", "codex_provider_config", "copy_home_files", "find_executable", "invocation",
                               "preset_brain", "preset_settings"],
}


def public_modules() -> list[str]:
    names = ["crewctl.exceptions", "crewctl.config", "crewctl.home"]
    for package in PACKAGES:
        names.append(f"crewctl.{package}")
        path = ROOT / package.replace(".", "/")
        names += [f"crewctl.{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])
                  if not m.name.startswith("_") and not m.ispkg]
    return sorted(names)


@pytest.mark.parametrize("name", public_modules())
def test_a_public_module_exports_exactly_what_it_means_to(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not have: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    defined_here = [
        n for n, v in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v)) and v.__module__ == name
    ]
    unexported = sorted(set(defined_here) - set(exported))
    assert unexported == [], f"{name} defines public {unexported} without exporting them (export or underscore)"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_packages_surface_is_pinned(name):
    assert sorted(importlib.import_module(name).__all__) == sorted(PINNED[name])
