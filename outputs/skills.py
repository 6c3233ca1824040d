"""Skills on disk: $CREWCTL_HOME/skills/NAME/SKILL.md (the Agent Skills layout)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..exceptions import CrewError
from ..goal import skills as rules
from ..goal.markers import SKILL_NAME
from ..goal.skills import Skill, SkillFormatError

__all__ = ["Listed", "SkillError", "export", "listing", "load", "save", "skill_path", "skills_dir"]


class SkillError(CrewError):
    """No such skill, or one that cannot be read or written; one line (exit 1)."""

    code = "skill"


@dataclass(frozen=True)
class Listed:
    name: str
    description: str | None  # None when the file cannot be read
    path: str
    mtime: float
    error: str | None = None


def skills_dir(home: str) -> str:
    return os.path.join(home, "skills")


def skill_path(home: str, name: str) -> str:
    if not SKILL_NAME.fullmatch(name):
        raise SkillError(f"{name!r} is not a skill name (lowercase letters, digits and '-', at most 64)")
    return os.path.join(skills_dir(home), name, "SKILL.md")


def save(home: str, skill: Skill, provenance: str | None = None) -> str:
    """Write (or replace) the skill; returns its path."""
    path = skill_path(home, skill.name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(rules.render(skill, provenance))
    os.replace(tmp, path)
    return path


def load(home: str, name: str) -> tuple[Skill, str, str]:
    """(skill, its file's text, its path). Raises SkillError."""
    path = skill_path(home, name)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SkillError(f"no skill {name} (see `crewctl skills list`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SkillError(f"cannot read {path}: {exc}") from None
    try:
        return rules.parse(text), text, path
    except SkillFormatError as exc:
        raise SkillError(f"{path}: {exc}") from None


def listing(home: str) -> list[Listed]:
    """Every skill, newest first (by when its file last changed), then by name."""
    root = skills_dir(home)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not SKILL_NAME.fullmatch(name):
            continue
        path = os.path.join(root, name, "SKILL.md")
        try:
            mtime = os.stat(path).st_mtime
            with open(path, encoding="utf-8") as f:
                skill = rules.parse(f.read())
            out.append(Listed(name, skill.description, path, mtime))
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError, SkillFormatError) as exc:
            out.append(Listed(name, None, path, 0.0, error=str(exc)))
    out.sort(key=lambda s: (-s.mtime, s.name))
    return out


def export(home: str, name: str, dest: str, *, force: bool = False) -> str:
    """Copy the skill to DEST/NAME/SKILL.md; refuses to overwrite a different file unless `force`."""
    _, text, _ = load(home, name)
    target = os.path.join(os.path.abspath(dest), name, "SKILL.md")
    if os.path.exists(target) and not force:
        with open(target, encoding="utf-8", errors="replace") as f:
            if f.read() != text:
                raise SkillError(f"{target} exists and differs; pass --force to replace it")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise SkillError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
