"""Property tests for the batch parser: whatever bytes arrive it never raises, never lets a
bad value through, and never drops a good one."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parkwatch.quantities import BOUNDS, QUANTITIES, Utility
from parkwatch.site import Park, SiteRegistry
from parkwatch.topics import DataTopic
from parkwatch.wire import DAY_MS, EPOCH_2000_MS, parse_batch

NOW = 1_732_411_200_000
TOPIC = DataTopic("p1", "gw-a")
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
                            {"id": "h1", "utility": "heat"},
                            {"id": "other-gw", "utility": "water", "gateway": "gw-b"},
                        ],
                    }
                ],
            }
        ],
    }
)
REGISTRY = SiteRegistry([PARK])
MINE = {m.id: m.utility for m in REGISTRY.meters("p1") if m.gateway == "gw-a"}


def assert_only_good_values_accepted(parsed: Any) -> None:
    for reading in parsed.readings:
        assert reading.meter.id in MINE
        assert reading.meter.gateway == TOPIC.gateway
        assert EPOCH_2000_MS <= reading.t <= NOW + DAY_MS
        assert reading.s in {"ok", "stale", "estimated", "bad"}
        assert reading.q
        for name, value in reading.q.items():
            low, high = BOUNDS[reading.meter.utility][name]
            assert isinstance(value, float)
            assert math.isfinite(value)
            assert low <= value <= high


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    parsed = parse_batch(payload, TOPIC, REGISTRY, NOW)
    assert_only_good_values_accepted(parsed)
    assert parsed.readings == [] or parsed.rejections == [] or not parsed.message_rejected


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(doc: Any) -> None:
    parsed = parse_batch(json.dumps(doc).encode(), TOPIC, REGISTRY, NOW)
    assert_only_good_values_accepted(parsed)


def good_value(name: str, utility: Utility) -> st.SearchStrategy[float]:
    low, high = BOUNDS[utility][name]
    return st.floats(min_value=max(low, -1e9), max_value=min(high, 1e9), allow_nan=False)


@st.composite
def good_reading(draw: st.DrawFn) -> dict[str, Any]:
    meter = draw(st.sampled_from(sorted(MINE)))
    utility = MINE[meter]
    names = draw(
        st.lists(st.sampled_from(sorted(BOUNDS[utility])), min_size=1, max_size=4, unique=True)
    )
    reading: dict[str, Any] = {
        "m": meter,
        "t": draw(st.integers(min_value=EPOCH_2000_MS, max_value=NOW + DAY_MS)),
        "q": {n: draw(good_value(n, utility)) for n in names},
    }
    if draw(st.booleans()):
        reading["s"] = draw(st.sampled_from(["ok", "stale", "estimated", "bad"]))
    return reading


VALUE_DEFECTS = {
    "nan": lambda q, n, u: float("nan"),
    "inf": lambda q, n, u: float("inf"),
    "string": lambda q, n, u: str(q[n]),
    "bool": lambda q, n, u: True,
    "null": lambda q, n, u: None,
    "too_big": lambda q, n, u: BOUNDS[u][n][1] * 10 + 1,
}
READING_DEFECTS = [
    "bad_id",
    "unknown_meter",
    "other_gateway",
    "future",
    "seconds",
    "float_t",
    "no_q",
    "extra_field",
    "bad_quality",
    "empty_q",
    "not_object",
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Any, dict[str, float]]:
    """A reading and the values of it that must be stored (empty: none)."""
    reading = draw(good_reading())
    utility = MINE[reading["m"]]
    kind = draw(
        st.sampled_from(["good", "value", "foreign_quantity", "unknown_quantity", "reading"])
    )
    if kind == "good":
        return reading, dict(reading["q"])
    if kind == "value":
        name = draw(st.sampled_from(sorted(reading["q"])))
        defect = draw(st.sampled_from(sorted(VALUE_DEFECTS)))
        reading["q"][name] = VALUE_DEFECTS[defect](reading["q"], name, utility)
        return reading, {k: v for k, v in reading["q"].items() if k != name}
    if kind in ("foreign_quantity", "unknown_quantity"):
        foreign = sorted(set(QUANTITIES) - set(BOUNDS[utility]))
        name = "watts" if kind == "unknown_quantity" else draw(st.sampled_from(foreign))
        good = dict(reading["q"])
        reading["q"][name] = 1.0
        return reading, good
    defect = draw(st.sampled_from(READING_DEFECTS))
    if defect == "not_object":
        return draw(st.sampled_from([1, "x", None, [reading]])), {}
    changes: dict[str, Any] = {
        "bad_id": {"m": "E 1"},
        "unknown_meter": {"m": "ghost"},
        "other_gateway": {"m": "other-gw"},
        "future": {"t": NOW + DAY_MS + 1},
        "seconds": {"t": NOW // 1000},
        "float_t": {"t": NOW + 0.5},
        "bad_quality": {"s": "fine"},
        "empty_q": {"q": {}},
        "extra_field": {"unit": "kW"},
    }.get(defect, {})
    reading.update(changes)
    if defect == "no_q":
        del reading["q"]
    return reading, {}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(mutated(), max_size=12), st.integers(min_value=0, max_value=2**31))
def test_near_valid_batches_keep_exactly_the_good_values(
    items: list[tuple[Any, dict[str, float]]], seq: int
) -> None:
    readings = [r for r, _ in items]
    payload = json.dumps({"v": 1, "gw": "gw-a", "seq": seq, "readings": readings}).encode()
    parsed = parse_batch(payload, TOPIC, REGISTRY, NOW)
    assert not parsed.message_rejected
    assert_only_good_values_accepted(parsed)
    expected = [(r["m"], r["t"], name, value) for r, good in items for name, value in good.items()]
    stored = [
        (a.meter.id, a.t, name, value) for a in parsed.readings for name, value in a.q.items()
    ]
    assert sorted(stored) == sorted(expected)
    bad = sum(1 for r, good in items if not isinstance(r, dict) or set(good) != set(r.get("q", {})))
    assert len(parsed.rejections) >= bad
