"""Git's rules for branch names (`git check-ref-format --branch`), checked offline and without git.

Status branches, followed branches and rollback branches are refused up front instead of failing inside a git call.
"""

from __future__ import annotations

_FORBIDDEN = frozenset(" ~^:?*[\\")


def branch_problem(name: str) -> str | None:
    """Why git would refuse `name` as a branch name, or None when it accepts it (refs.c check_refname_format)."""
    if not name:
        return "a branch name cannot be empty"
    if name.startswith("-"):
        return "a branch name cannot start with '-'"
    if name == "HEAD":
        return f"{name!r} is not a branch name git accepts"
    for ch in name:
        if ord(ch) < 32 or ord(ch) == 127:
            return "a branch name cannot contain control characters"
        if ch in _FORBIDDEN:
            return f"a branch name cannot contain {ch!r}" if ch != " " else "a branch name cannot contain spaces"
    if ".." in name:
        return "a branch name cannot contain '..'"
    if "@{" in name:
        return "a branch name cannot contain '@{'"
    if name.endswith("."):
        return "a branch name cannot end with '.'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "a branch name cannot start or end with '/' or contain '//'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"a branch name component cannot start with '.' ({part!r})"
        if part.endswith(".lock"):
            return f"a branch name component cannot end with '.lock' ({part!r})"
    return None
