"""The R4 resource types and identifier formats (http://hl7.org/fhir/R4/datatypes.html#id)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@cache
def resource_types() -> frozenset[str]:
    data = resources.files("fhirlake") / "data" / "r4" / "resource-types.json"
    return frozenset(json.loads(data.read_text()))


def is_resource_type(name: str) -> bool:
    return name in resource_types()


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
