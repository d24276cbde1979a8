"""Malformed JSON as an OperationOutcome issue: a line/column and the FHIRPath of the element being
parsed (``Patient.name[0]``), found by a tolerant rescan of the text up to the error position. Never
quotes content.

FHIR JSON is strict JSON (http://hl7.org/fhir/R4/json.html): no comments, no trailing commas.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fhirlake.fhir.outcome import Issue

_RTYPE_RE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]{1,64})"')


def syntax_issue(raw: bytes | str, exc: json.JSONDecodeError) -> Issue:
    doc: str = exc.doc if isinstance(exc.doc, str) else ""
    pos = exc.pos
    rest = doc[pos : pos + 2]
    if rest in ("//", "/*") or _inside_comment(doc, pos):
        reason = "Comments are not allowed in JSON"
    elif "trailing comma" in exc.msg:
        reason = "Trailing commas are not allowed in JSON"
    elif "expected ','" in exc.msg and rest[:1] == '"':
        reason = "A comma is missing in the JSON"
    elif "expected ','" in exc.msg and rest[:1] in ("]", "}"):
        reason = "Unexpected closing bracket in the JSON (wrong close marker)"
    else:
        reason = exc.msg.split(":", 1)[0]  # orjson's messages name the rule, never the content
    raw_b = raw.encode() if isinstance(raw, str) else raw
    m = _RTYPE_RE.search(raw_b)
    root = m.group(1).decode() if m else "$"
    expression = _path_at(doc, pos, root) if doc else root
    return Issue(
        "fatal",
        "invalid",
        f"Error parsing JSON at line {exc.lineno}, column {exc.colno}: {reason}",
        (expression,),
    )


def _inside_comment(doc: str, pos: int) -> bool:
    line_start = doc.rfind("\n", 0, pos) + 1
    return doc[line_start:pos].lstrip().startswith(("//", "/*"))


def _path_at(doc: str, pos: int, root: str) -> str:
    """FHIRPath of the innermost container open at ``pos`` (by a tolerant rescan of ``doc``)."""
    # stack items: [is_object, key_or_index, expecting_key]
    stack: list[list[Any]] = []
    i, n = 0, min(pos, len(doc))
    while i < n:
        c = doc[i]
        if c == '"':
            j = i + 1
            while j < len(doc) and doc[j] != '"':
                j += 2 if doc[j] == "\\" else 1
            if stack and stack[-1][0] and stack[-1][2]:
                stack[-1][1] = doc[i + 1 : j]
                stack[-1][2] = False
            i = j + 1
            continue
        if c == "/" and doc[i : i + 2] == "//":
            nl = doc.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c == "{":
            stack.append([True, None, True])
        elif c == "[":
            stack.append([False, 0, False])
        elif c in "}]":
            if stack:
                stack.pop()
        elif c == "," and stack:
            if stack[-1][0]:
                stack[-1][2] = True
            else:
                stack[-1][1] += 1
        i += 1
    path = root
    for parent in stack[:-1]:
        if parent[0]:
            path += f".{parent[1]}"
        else:
            path += f"[{parent[1]}]"
    return path
