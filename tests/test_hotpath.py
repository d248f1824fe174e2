"""The compiled per-reading loops (``parkwatch/_hotpath.pyx``) against their Python references:
the same verdicts, the same readings and counter flags, and lines InfluxDB reads as the same
points (each float may be written in another decimal form, which must read back exactly)."""

from __future__ import annotations

import math
import sys
import types
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parkwatch
from ingest import counters
from ingest import service as ingest_service
from ingest.counters import CounterWatch
from ingest.service import encode_lines, encode_lines_py
from parkwatch import _hotpath, hotpath, influx
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import _PLAIN, AcceptedReading, check_plain_py, encode_batch

PARK = Park.model_validate(
    {
        "park": "p1",
        "enterprises": [
            {
                "id": "a",
                "workshops": [
                    {
                        "id": "w",
                        "meters": [
                            {"id": "e1", "utility": "electricity"},
                            {"id": "e2", "utility": "electricity"},
                            {"id": "w1", "utility": "water"},
                            {"id": "other-gw", "utility": "water", "gateway": "gw-b"},
                        ],
                    }
                ],
            }
        ],
    }
)
REGISTRY = SiteRegistry([PARK])
METERS = REGISTRY.gateway_meters("p1", "gw-a")
ALL = REGISTRY.park_meters("p1")
NOW = 1_732_411_200_000
QUALITIES = ["ok", "stale", "estimated", "bad", "rollover", "reset", "replaced", "decreased"]

floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 412.5, 1834567.2, 1e-7, 1e16, 5e-324, 0.1 + 0.2, 999999999.999999, 1e9]
)


def test_the_extension_is_built() -> None:
    """Installing the project builds it; without it ingest runs the (slower) Python loops."""
    assert hotpath.COMPILED
    assert counters._flag_compiled is _hotpath.flag_counters
    assert ingest_service._encode_compiled is _hotpath.encode_lines
    assert influx._join_lines is _hotpath.join_lines


def test_ingest_says_once_at_start_when_it_runs_the_python_loops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="ingest.service")
    ingest_service.warn_without_compiled_loops()
    assert not caplog.records
    monkeypatch.setattr(hotpath, "COMPILED", False)
    ingest_service.warn_without_compiled_loops()
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "Python loops" in record.getMessage()


def _fields(line: str) -> tuple[str, dict[str, float | str], int]:
    series, fields, t = line.split(" ")
    out: dict[str, float | str] = {}
    for field in fields.split(","):
        name, text = field.split("=")
        out[name] = text.strip('"') if name == "quality" else float(text)
    return series, out, int(t)


@settings(max_examples=400)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(sorted(ALL)),
            st.integers(min_value=0, max_value=2**62),
            st.dictionaries(st.sampled_from(["p_kw", "e_kwh", "flow_m3h"]), floats, min_size=1),
            st.sampled_from(QUALITIES),
        ),
        max_size=20,
    )
)
def test_compiled_lines_read_back_as_the_python_ones(rows: list[Any]) -> None:
    readings = [AcceptedReading(ALL[m], t, q, s) for m, t, q, s in rows]
    compiled = _hotpath.encode_lines(readings, ingest_service._QUALITY_FIELD)
    assert compiled is not None
    reference = encode_lines_py(readings)
    assert len(compiled) == len(reference)
    for line, ref, reading in zip(compiled, reference, readings, strict=True):
        assert _fields(line) == _fields(ref)
        _, fields, _ = _fields(line)
        for name, value in reading.q.items():
            # exactly the float, sign of zero included
            assert math.copysign(1.0, fields[name]) == math.copysign(1.0, value)  # type: ignore[arg-type]
            assert fields[name] == value


def test_values_the_compiled_encoder_does_not_take_go_to_the_python_one() -> None:
    meter = ALL["e1"]
    odd = [
        AcceptedReading(meter, NOW, {"p_kw": 5}),  # type: ignore[dict-item]
        AcceptedReading(meter, NOW, {"p_kw": math.inf}),
    ]
    for reading in odd:
        assert _hotpath.encode_lines([reading], ingest_service._QUALITY_FIELD) is None
        assert encode_lines([reading]) == encode_lines_py([reading])
    assert encode_lines([]) == []


def _reading() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "m": st.sampled_from(["e1", "e2", "w1", "other-gw", "nope"]),
            "t": st.integers(min_value=946_684_800_000, max_value=NOW + 10**9),
            "q": st.dictionaries(
                st.sampled_from(["p_kw", "e_kwh", "vol_m3", "flow_m3h", "pf", "unknown_q"]),
                st.floats(allow_nan=False, allow_infinity=False, width=64)
                | st.integers(min_value=-(10**6), max_value=10**6).map(float),
                min_size=1,
                max_size=3,
            ),
            "s": st.sampled_from(["ok", "stale", "bad"]),
        }
    )


@settings(max_examples=400)
@given(readings=st.lists(_reading(), max_size=8), newest=st.integers(NOW - 10**9, NOW + 10**9))
def test_compiled_site_checks_match_python(readings: list[dict[str, Any]], newest: int) -> None:
    try:
        batch = _PLAIN.decode(encode_batch("gw-a", 1, readings))
    except msgspec.ValidationError:
        return  # the decoder's own verdict, before either loop runs
    compiled = _hotpath.check_plain(batch.readings, METERS, newest, AcceptedReading)
    assert compiled == check_plain_py(batch.readings, METERS, newest, AcceptedReading)
    if compiled is not None:
        assert all(type(r) is AcceptedReading for r in compiled)


@settings(max_examples=300)
@given(
    chunks=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from(["e1", "e2", "w1"]),
                st.integers(min_value=0, max_value=20),
                st.dictionaries(
                    st.sampled_from(["e_kwh", "p_kw", "vol_m3"]),
                    st.integers(min_value=0, max_value=5).map(float),
                    min_size=1,
                ),
                st.sampled_from(["ok", "bad", "stale"]),
            ),
            max_size=10,
        ),
        max_size=4,
    )
)
def test_compiled_counter_watch_matches_python(chunks: list[list[Any]]) -> None:
    compiled, reference = CounterWatch(), CounterWatch()
    for rows in chunks:
        mine = [AcceptedReading(ALL[m], t, q, s) for m, t, q, s in rows]
        theirs = list(mine)
        assert compiled.flag(mine) == reference.flag_py(theirs)
        assert mine == theirs
    assert compiled._last == reference._last


@pytest.mark.parametrize("value", [0.1, 1.5, -2.25, 123456.789, 1e-6, 3.0, 999999999.5])
def test_plain_decimals(value: float) -> None:
    meter = ALL["e1"]
    [line] = _hotpath.encode_lines(
        [AcceptedReading(meter, NOW, {"p_kw": value})], ingest_service._QUALITY_FIELD
    ) or [""]
    text = line.split(" ")[1].removeprefix("p_kw=")
    assert float(text) == value
    assert text == repr(value) or ("e" in repr(value) and "e" not in text)


def test_values_in_a_mapping_other_than_a_dict() -> None:
    """The compiled loops walk any mapping, in its own order, as the Python ones do."""
    from collections import OrderedDict

    meter = ALL["e1"]
    compiled, reference = CounterWatch(), CounterWatch()
    for i, value in enumerate((5.0, 3.0)):
        values = OrderedDict([("p_kw", 1.0), ("e_kwh", value)])
        mine = [AcceptedReading(meter, NOW + i, values)]
        theirs = list(mine)
        assert compiled.flag(mine) == reference.flag_py(theirs)
        assert mine == theirs
    assert [r.s for r in mine] == ["decreased"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40)))
def test_a_batch_joined_in_c_is_the_python_body(lines: list[str]) -> None:
    """The writer's body: the same bytes as the Python join, or None (then Python joins) for
    an empty batch or a line that is not plain ASCII."""
    joined = _hotpath.join_lines(lines)
    if joined is None:
        assert not lines or not all(line.isascii() for line in lines)
    else:
        assert joined == ("\n".join(lines) + "\n").encode()


def test_a_batch_with_other_than_ascii_strs_is_left_to_python() -> None:
    assert _hotpath.join_lines(["a b=1 2", "c,t=é d=1 2"]) is None
    assert _hotpath.join_lines(["a b=1 2", cast(str, b"c d=1 2")]) is None
    assert _hotpath.join_lines([]) is None
    assert _hotpath.join_lines(["a b=1 2", ""]) == b"a b=1 2\n\n"


def test_a_stale_build_without_the_join_leaves_it_to_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An extension built from an older ``_hotpath.pyx`` lacks ``join_lines``: the other
    loops stay compiled, the writer joins in Python (and ingest warns: not all compiled)."""
    stale = types.ModuleType("parkwatch._hotpath")
    for name in hotpath._NAMES:
        if name != "join_lines":
            setattr(stale, name, getattr(_hotpath, name))
    stale.SCAN_RUN_VERSION = _hotpath.SCAN_RUN_VERSION  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "parkwatch._hotpath", stale)
    monkeypatch.setattr(parkwatch, "_hotpath", stale)
    found = hotpath._compiled()
    assert "join_lines" not in found
    assert set(found) == set(hotpath._NAMES) - {"join_lines"}
    assert len(found) < len(hotpath._NAMES)  # COMPILED would be False


def test_a_build_whose_scan_run_predates_the_tracker_leaves_the_loop_to_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build older than scan_run's tracker argument (no ``SCAN_RUN_VERSION``): its
    scan_run would refuse ingest's arguments, so ingest's loop runs in Python, the other
    functions compiled."""
    stale = types.ModuleType("parkwatch._hotpath")
    for name in hotpath._NAMES:
        setattr(stale, name, getattr(_hotpath, name))
    monkeypatch.setitem(sys.modules, "parkwatch._hotpath", stale)
    monkeypatch.setattr(parkwatch, "_hotpath", stale)
    found = hotpath._compiled()
    assert set(found) == set(hotpath._NAMES) - {"scan_run"}
