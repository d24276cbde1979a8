"""HL7 SQL on FHIR v2 ViewDefinitions (https://sql-on-fhir.org): flat, typed rows from FHIR resources.

``evaluate(view, resources)`` runs a view once; ``compile_view(view)`` validates and compiles it so that
``.rows(resource)`` can be called per resource (the lake does, for every stored version).
``default_views()`` are the views shipped with fhirlake (``fhirlake/data/views/*.json``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fhirlake.views.definition import Column, CompiledView, ViewDefinitionError, compile_view, evaluate

__all__ = ["Column", "CompiledView", "ViewDefinitionError", "compile_view", "default_views", "evaluate"]


@cache
def _default_view_texts() -> tuple[str, ...]:
    folder = resources.files("fhirlake") / "data" / "views"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return tuple(f.read_text(encoding="utf-8") for f in files)


def default_views() -> list[dict[str, Any]]:
    """The shipped ViewDefinitions, sorted by file name (fresh copies: callers may change them)."""
    return [json.loads(text) for text in _default_view_texts()]
