"""The normalized, searchable values of a resource: what the index stores and what queries compare.

One :class:`IndexValue` per (parameter, value) a resource has; ``fhirlake.search.extract`` produces them by
evaluating the official R4 SearchParameter expressions. Every field is normalized so that comparisons are
plain string/Decimal operations:

| type      | fields used                                                                                |
|-----------|--------------------------------------------------------------------------------------------|
| string    | ``text`` (normalized: NFKD, accents removed, casefolded, whitespace collapsed), ``exact``      |
| token     | ``system`` (None = absent), ``code`` (None = absent), ``text`` (normalized display/text),    |
|           | ``type_system``/``type_code`` (Identifier.type codings, for ``:of-type``)                  |
| reference | ``reference`` (as written, ``_history/n`` removed; ``Type/id`` for local refs),             |
|           | ``ref_type``/``ref_id`` when it is a literal ``Type/id`` (also for absolute URLs ending so),  |
|           | ``system``/``code`` from ``Reference.identifier`` (for ``:identifier``)                      |
| date      | ``low``/``high``: UTC instants ``YYYY-MM-DDTHH:MM:SS.mmmZ`` bounding the value's precision    |
|           | (a date "2020" is 2020-01-01T00:00:00.000Z..2020-12-31T23:59:59.999Z; an open Period end is   |
|           | ``OPEN_HIGH``, an open start ``OPEN_LOW``)                                                   |
| number    | ``number`` (Decimal), ``number_low``/``number_high`` (implicit precision range, e.g. 100 →   |
|           | 99.5..100.5)                                                                                 |
| quantity  | as number, plus ``system``, ``code`` (unit code) and ``text`` (normalized unit)               |
| uri       | ``uri`` (exact string)                                                                        |
| composite | ``components``: tuple of IndexValues, one per component, in definition order                  |
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

OPEN_LOW = "0001-01-01T00:00:00.000Z"
OPEN_HIGH = "9999-12-31T23:59:59.999Z"


@dataclass(frozen=True, slots=True, init=False)  # __init__ below
class IndexValue:
    code: str  # the search parameter code, e.g. "birthdate"
    type: str  # string | token | reference | date | number | quantity | uri | composite
    text: str | None = None
    exact: str | None = None
    system: str | None = None
    code_value: str | None = None  # token code / quantity unit code ("code" is the parameter)
    type_system: str | None = None
    type_code: str | None = None
    reference: str | None = None
    ref_type: str | None = None
    ref_id: str | None = None
    low: str | None = None
    high: str | None = None
    number: Decimal | None = None
    number_low: Decimal | None = None
    number_high: Decimal | None = None
    uri: str | None = None
    components: tuple[IndexValue, ...] = ()


# The frozen dataclass's generated __init__ sets its 18 slots through ``object.__setattr__`` by name; a value
# is built for every new (parameter, value) on every write (first imports: ~15 % of index_values). Calling
# the slots' own setters directly does the same in about half the time. tests/search/test_values.py checks
# that it takes exactly the fields, with their defaults.
_SET = {name: getattr(IndexValue, name).__set__ for name in IndexValue.__slots__}
_set_code, _set_type, _set_text, _set_exact = _SET["code"], _SET["type"], _SET["text"], _SET["exact"]
_set_system, _set_code_value, _set_type_system = _SET["system"], _SET["code_value"], _SET["type_system"]
_set_type_code, _set_reference, _set_ref_type = _SET["type_code"], _SET["reference"], _SET["ref_type"]
_set_ref_id, _set_low, _set_high, _set_number = _SET["ref_id"], _SET["low"], _SET["high"], _SET["number"]
_set_number_low, _set_number_high = _SET["number_low"], _SET["number_high"]
_set_uri, _set_components = _SET["uri"], _SET["components"]


def _init(
    self: IndexValue,
    code: str,
    type: str,
    text: str | None = None,
    exact: str | None = None,
    system: str | None = None,
    code_value: str | None = None,
    type_system: str | None = None,
    type_code: str | None = None,
    reference: str | None = None,
    ref_type: str | None = None,
    ref_id: str | None = None,
    low: str | None = None,
    high: str | None = None,
    number: Decimal | None = None,
    number_low: Decimal | None = None,
    number_high: Decimal | None = None,
    uri: str | None = None,
    components: tuple[IndexValue, ...] = (),
) -> None:
    _set_code(self, code)
    _set_type(self, type)
    _set_text(self, text)
    _set_exact(self, exact)
    _set_system(self, system)
    _set_code_value(self, code_value)
    _set_type_system(self, type_system)
    _set_type_code(self, type_code)
    _set_reference(self, reference)
    _set_ref_type(self, ref_type)
    _set_ref_id(self, ref_id)
    _set_low(self, low)
    _set_high(self, high)
    _set_number(self, number)
    _set_number_low(self, number_low)
    _set_number_high(self, number_high)
    _set_uri(self, uri)
    _set_components(self, components)


_init.__qualname__ = "IndexValue.__init__"
IndexValue.__init__ = _init  # type: ignore[method-assign]
