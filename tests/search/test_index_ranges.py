"""Range drivers (date/number/quantity prefixes read a key range, not the whole partition) and
write-sharded partitions (paging across shards), against brute force on moto."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fhirlake.search.extract import parameter_values
from fhirlake.search.query import matches, parse_search

BASE = "http://fhir.example/base"


class CountingClient:
    """The DynamoDB client, counting requests and the index entries Queries return."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.requests = 0
        self.entries_read = 0

    def query(self, **kwargs: Any) -> dict[str, Any]:
        resp = self._client.query(**kwargs)
        self.requests += 1
        self.entries_read += len(resp.get("Items", []))
        return resp

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.requests += 1
        return self._client.batch_get_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def counted(service) -> CountingClient:
    store = service.store
    counter = CountingClient(store.dynamodb)
    store._ddb = counter  # the store's own client, counted for the searches that follow
    return counter


def all_pages(service, rtype: str, query: list[tuple[str, str]]) -> list[str]:
    ids: list[str] = []
    cursor: list[tuple[str, str]] = []
    while True:
        page = service.searching().search(rtype, query + cursor, BASE, strict=True).page
        ids += [v.id for v in page.versions]
        if page.next_cursor is None:
            return ids
        cursor = [("_cursor", page.next_cursor)]


def brute_force(service, rtype: str, query: list[tuple[str, str]], ids: list[str]) -> set[str]:
    request = parse_search(rtype, query, BASE, strict=True)
    found = set()
    for rid in ids:
        resource = service.read(rtype, rid).resource
        if all(matches(c, parameter_values(c.param, resource)) for c in request.criteria):
            found.add(rid)
    return found


BIRTH_DATES = [
    "1950",
    "1960-06",
    "1969-12-31",
    "1970-01-01",
    "1975-03-04",
    "1980",
    "1990-07-15",
    "2001-02-03",
]


@pytest.fixture
def patients(create_all) -> list[str]:
    return create_all(
        [
            {"resourceType": "Patient", "birthDate": born, "gender": ["male", "female"][n % 2]}
            for n, born in enumerate(BIRTH_DATES * 3)
        ]
    )


DATE_VALUES = [
    *("1970", "1969-12", "ne1970", "gt1970", "ge1970", "lt1970", "le1970", "sa1970", "eb1970", "ap1975"),
    *("gt1970-01-01", "ge1980", "lt1960-06", "le1950", "1970,1990"),
]


def test_date_prefixes_give_the_spec_results(index_service, patients) -> None:
    for value in DATE_VALUES:  # one data set for all (moto setup is the slow part)
        query = [("birthdate", value), ("_count", "4")]
        pages = all_pages(index_service, "Patient", query)
        assert len(pages) == len(set(pages)), value  # no resource on two pages
        assert set(pages) == brute_force(index_service, "Patient", query, patients), value


def test_date_ranges_read_only_their_key_range(index_service, patients) -> None:
    counter = counted(index_service)
    assert len(all_pages(index_service, "Patient", [("birthdate", "1975-03-04")])) == 3
    assert counter.entries_read == 3  # not the 24 of the partition
    counter.entries_read = 0
    assert len(all_pages(index_service, "Patient", [("birthdate", "gt1989")])) == 6
    # birthDate is a date: a value ends at most a year after it starts, so only entries from 1988 on
    assert counter.entries_read == 6
    counter.entries_read = 0
    all_pages(index_service, "Patient", [("birthdate", "ne1970")])
    assert counter.entries_read == len(patients)  # ne cannot narrow: the partition


@pytest.fixture
def observations(create_all) -> list[str]:
    values = ["-5", "0", "0.5", "1", "1.0", "1.5", "2", "9.99", "10", "100", "120.5"]
    return create_all(
        [
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": float(value), "system": "http://unitsofmeasure.org", "code": "mg"},
                "effectivePeriod": {"start": f"2020-01-{n + 1:02d}", **({"end": "2021"} if n % 3 else {})},
            }
            for n, value in enumerate(values)
        ]
    )


OBSERVATION_CRITERIA = [
    *[("value-quantity", v) for v in ("1", "1.0", "gt1", "ge1.5", "lt0.5", "le2", "ap10", "ne1", "sa9.99")],
    *[("value-quantity", v) for v in ("eb0", "lt10|http://unitsofmeasure.org|mg", "gt-10")],
    # Periods: an unbounded span, so gt/ge cannot narrow (and still answer right)
    *[("date", v) for v in ("gt2020-06", "ge2020-01-05", "lt2020-01-03", "eb2020-01-02", "2020-01")],
]


def test_number_and_period_prefixes_give_the_spec_results(index_service, observations) -> None:
    for name, value in OBSERVATION_CRITERIA:
        query = [(name, value), ("_count", "3")]
        pages = all_pages(index_service, "Observation", query)
        assert len(pages) == len(set(pages)), value
        assert set(pages) == brute_force(index_service, "Observation", query, observations), value


def test_equality_driver_is_preferred_over_a_range(index_service, observations) -> None:
    counter = counted(index_service)
    found = all_pages(index_service, "Observation", [("value-quantity", "gt0"), ("_id", observations[1])])
    assert found == [] and counter.entries_read <= 1  # _id narrows to one entry; "0" is not > 0


# -- sharded partitions ---------------------------------------------------------------------------------
def test_paging_a_sharded_value_is_complete_and_stable_under_writes(
    index_service, use_index_config, create_all
) -> None:
    use_index_config('{"shards": {"Patient.gender": 4}}')
    females = create_all([{"resourceType": "Patient", "gender": "female"}] * 23)
    create_all([{"resourceType": "Patient", "gender": "male"}] * 5)
    searching = index_service.searching()
    seen: list[str] = []
    query = [("gender", "female"), ("_count", "4")]
    page = searching.search("Patient", query, BASE, strict=True).page
    removed = None
    for round_ in itertools.count():
        seen += [v.id for v in page.versions]
        if page.next_cursor is None:
            break
        if round_ == 1:  # writes between pages: new matches, and one not yet seen is deleted
            index_service.create("Patient", {"resourceType": "Patient", "gender": "female"})
            removed = next(rid for rid in females if rid not in seen)
            index_service.delete("Patient", removed, None)
        page = searching.search("Patient", [*query, ("_cursor", page.next_cursor)], BASE, strict=True).page
    assert len(seen) == len(set(seen))  # never twice
    assert set(females) - {removed} <= set(seen)  # never skipped
    assert removed not in seen


def test_a_page_of_a_common_sharded_value_costs_two_requests(
    index_service, use_index_config, create_all
) -> None:
    use_index_config('{"shards": {"Patient.gender": 2}}')
    create_all([{"resourceType": "Patient", "gender": "female"}] * 130)
    counter = counted(index_service)
    page = index_service.searching().search("Patient", [("gender", "female")], BASE, strict=True).page
    assert len(page.versions) == 50 and page.next_cursor
    assert counter.requests == 2  # one Query of one shard, one BatchGetItem


def test_a_rare_sharded_value_is_found_in_every_shard(index_service, use_index_config, create_all) -> None:
    use_index_config('{"shards": {"Patient.gender": 8}}')
    others = create_all([{"resourceType": "Patient", "gender": "other"}] * 5)
    create_all([{"resourceType": "Patient", "gender": "male"}] * 10)
    found = all_pages(index_service, "Patient", [("gender", "other")])
    assert sorted(found) == sorted(others)
    total = index_service.searching().search(
        "Patient", [("gender", "other"), ("_summary", "count")], BASE, True
    )
    assert total.page.total == 5


def test_a_cursor_from_another_shard_count_is_refused(index_service, use_index_config, create_all) -> None:
    from fhirlake.persistence.dynamodb import InvalidCursor

    use_index_config('{"shards": {"Patient.gender": 8}}')
    create_all([{"resourceType": "Patient", "gender": "male"}] * 12)
    query = [("gender", "male"), ("_count", "1")]
    cursors = []
    page = index_service.searching().search("Patient", query, BASE, strict=True).page
    while page.next_cursor:
        cursors.append(page.next_cursor)
        page = (
            index_service.searching().search("Patient", [*query, ("_cursor", cursors[-1])], BASE, True).page
        )
    use_index_config('{"shards": {"Patient.gender": 2}}')
    with pytest.raises(InvalidCursor):
        index_service.searching().search("Patient", [*query, ("_cursor", cursors[-1])], BASE, strict=True)


def test_ranges_at_the_ends_of_the_calendar_fall_back_to_the_whole_partition() -> None:
    from fhirlake.persistence import search_index

    for value in ("gt0001", "ge0001-01", "ap9999-12-31"):
        ranges = search_index.driver_ranges(
            parse_search("Patient", [("birthdate", value)], BASE, True).criteria[0]
        )
        assert ranges is None or ranges == [search_index.KeyRange("", search_index.HIGHEST)], value
