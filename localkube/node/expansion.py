"""``$(VAR)`` references in command, args and env values, expanded as the kubelet does.

A port of Kubernetes' ``third_party/forked/golang/expansion``: ``$(NAME)`` is
replaced by the variable's value when it is defined and left as written when
it is not; ``$$`` is an escaped ``$``; any other ``$`` is kept as it is.
Purely computational.
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(text: str, env: Mapping[str, str]) -> str:
    """``text`` with each ``$(NAME)`` defined in ``env`` replaced by its value."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            read, is_var, advance = _read_variable(text[cursor + 1:])
            if is_var:
                out.append(env.get(read, f"$({read})"))
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _read_variable(rest: str) -> tuple[str, bool, int]:
    """(what was read, whether it is a variable name, how many characters it used)."""
    first = rest[0]
    if first == "$":
        return "$", False, 1
    if first == "(":
        close = rest.find(")", 1)
        if close != -1:
            return rest[1:close], True, close + 1
        return "$(", False, 1
    return "$" + first, False, 1


def expand_all(items: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(item, env) for item in items]
