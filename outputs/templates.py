"""Finding templates: the built-ins and the operator's TOML files beside the config.

`~/.config/crewctl/templates/NAME.toml` (with XDG_CONFIG_HOME, or beside the file that
CREWCTL_CONFIG names). A file there with a built-in's name is used instead of it.
"""

from __future__ import annotations

import os

from ..config import config_path
from ..goal.templates import BUILTIN, Template, TemplateError, parse_template

__all__ = ["all_templates", "find", "templates_dir"]


def templates_dir() -> str:
    return os.path.join(os.path.dirname(config_path()), "templates")


def _user_files() -> dict[str, str]:
    root = templates_dir()
    try:
        names = os.listdir(root)
    except OSError:
        return {}
    return {n[: -len(".toml")]: os.path.join(root, n) for n in names if n.endswith(".toml")}


def _read(name: str, path: str) -> Template:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from None
    return parse_template(name, text, path)


def find(name: str) -> Template:
    """The template NAME; raises TemplateError (exit 2) naming the ones there are."""
    user = _user_files()
    if name in user:
        return _read(name, user[name])
    if name in BUILTIN:
        return parse_template(name, BUILTIN[name], "built-in")
    known = sorted(set(BUILTIN) | set(user))
    raise TemplateError(f"no template {name!r} (templates: {', '.join(known)}; see `crewctl templates list`)")


def all_templates() -> list[tuple[str, Template | None, str | None]]:
    """(name, template or None, error or None) for every template, sorted by name."""
    user = _user_files()
    out = []
    for name in sorted(set(BUILTIN) | set(user)):
        try:
            out.append((name, find(name), None))
        except TemplateError as exc:
            out.append((name, None, exc.message))
    return out
