"""The park's working calendar: Chinese public holidays as data, and local time vectorised.

China's State Council announces each year's holidays the November before, together with
make-up working days (调休: a Saturday or Sunday worked to bridge a holiday). Both are data
here. 2024–2026 are the announced schedules; 2027 is provisional (statutory days only, on
their lunar dates, no make-up days) until it is announced. Dates outside the table fall back to
plain weekends.

Days are numbered like numpy's ``datetime64[D]``: days since 1970-01-01 on the park's local
clock, so a whole array of timestamps is classified with a few array operations.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

# (name, first day, last day) of each announced holiday; inclusive.
HOLIDAYS: dict[int, list[tuple[str, str, str]]] = {
    2024: [
        ("元旦 New Year", "2024-01-01", "2024-01-01"),
        ("春节 Spring Festival", "2024-02-10", "2024-02-17"),
        ("清明 Qingming", "2024-04-04", "2024-04-06"),
        ("劳动节 Labour Day", "2024-05-01", "2024-05-05"),
        ("端午 Dragon Boat", "2024-06-10", "2024-06-10"),
        ("中秋 Mid-Autumn", "2024-09-15", "2024-09-17"),
        ("国庆 National Day", "2024-10-01", "2024-10-07"),
    ],
    2025: [
        ("元旦 New Year", "2025-01-01", "2025-01-01"),
        ("春节 Spring Festival", "2025-01-28", "2025-02-04"),
        ("清明 Qingming", "2025-04-04", "2025-04-06"),
        ("劳动节 Labour Day", "2025-05-01", "2025-05-05"),
        ("端午 Dragon Boat", "2025-05-31", "2025-06-02"),
        ("国庆 中秋 National Day and Mid-Autumn", "2025-10-01", "2025-10-08"),
    ],
    2026: [
        ("元旦 New Year", "2026-01-01", "2026-01-03"),
        ("春节 Spring Festival", "2026-02-15", "2026-02-23"),
        ("清明 Qingming", "2026-04-04", "2026-04-06"),
        ("劳动节 Labour Day", "2026-05-01", "2026-05-05"),
        ("端午 Dragon Boat", "2026-06-19", "2026-06-21"),
        ("中秋 Mid-Autumn", "2026-09-25", "2026-09-27"),
        ("国庆 National Day", "2026-10-01", "2026-10-07"),
    ],
    # provisional: the statutory days only (Spring Festival: eve and the first three days)
    2027: [
        ("元旦 New Year", "2027-01-01", "2027-01-01"),
        ("春节 Spring Festival", "2027-02-05", "2027-02-08"),
        ("清明 Qingming", "2027-04-05", "2027-04-05"),
        ("劳动节 Labour Day", "2027-05-01", "2027-05-02"),
        ("端午 Dragon Boat", "2027-06-09", "2027-06-09"),
        ("中秋 Mid-Autumn", "2027-09-15", "2027-09-15"),
        ("国庆 National Day", "2027-10-01", "2027-10-03"),
    ],
}

# weekend days worked to bridge a holiday (调休)
MAKEUP_WORKDAYS: dict[int, list[str]] = {
    2024: [
        *("2024-02-04", "2024-02-18", "2024-04-07", "2024-04-28"),
        *("2024-05-11", "2024-09-14", "2024-09-29", "2024-10-12"),
    ],
    2025: ["2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"],
    2026: ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"],
    2027: [],
}

# Many workers travel home for the Spring Festival: labour-intensive plants close a few days
# before the official holiday and ramp up over the week after it.
FESTIVAL_BEFORE_DAYS = 2
FESTIVAL_AFTER_DAYS = 5

# day types, the rows of an industry's shift table
WORKDAY, SATURDAY, SUNDAY, HOLIDAY = 0, 1, 2, 3
DAY_TYPES = ("workday", "saturday", "sunday", "holiday")

_EPOCH = date(1970, 1, 1)
DAY_MS = 86_400_000


def day_number(d: date) -> int:
    return (d - _EPOCH).days


def _days(spans: list[tuple[str, str]]) -> IntArray:
    out: list[int] = []
    for first, last in spans:
        a, b = date.fromisoformat(first), date.fromisoformat(last)
        out.extend(range(day_number(a), day_number(b) + 1))
    return np.array(sorted(set(out)), dtype=np.int64)


_HOLIDAY_DAYS = _days([(a, b) for spans in HOLIDAYS.values() for _, a, b in spans])
_MAKEUP_DAYS = _days([(d, d) for days in MAKEUP_WORKDAYS.values() for d in days])
_FESTIVAL_DAYS = _days(
    [
        (
            (date.fromisoformat(a) - timedelta(days=FESTIVAL_BEFORE_DAYS)).isoformat(),
            (date.fromisoformat(b) + timedelta(days=FESTIVAL_AFTER_DAYS)).isoformat(),
        )
        for spans in HOLIDAYS.values()
        for name, a, b in spans
        if "Spring Festival" in name
    ]
)


def holiday_name(d: date) -> str | None:
    """The holiday ``d`` falls in, or None (make-up working days are not holidays)."""
    for name, first, last in HOLIDAYS.get(d.year, []):
        if date.fromisoformat(first) <= d <= date.fromisoformat(last):
            return name
    return None


def is_workday(d: date) -> bool:
    return bool(day_types(np.array([day_number(d)]))[0] == WORKDAY)


def day_types(days: IntArray) -> npt.NDArray[np.int8]:
    """WORKDAY, SATURDAY, SUNDAY or HOLIDAY for each local day number."""
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    out = np.full(days.shape, WORKDAY, dtype=np.int8)
    out[weekday == 5] = SATURDAY
    out[weekday == 6] = SUNDAY
    out[np.isin(days, _MAKEUP_DAYS)] = WORKDAY
    out[np.isin(days, _HOLIDAY_DAYS)] = HOLIDAY
    return out


def festival(days: IntArray) -> npt.NDArray[np.bool_]:
    """True on the days around the Spring Festival that labour-intensive plants stay closed."""
    return np.isin(days, _FESTIVAL_DAYS)


_SLOT_MS = 900_000  # UTC offsets change on quarter-hour boundaries in every zone in use


def local_ms(t_ms: IntArray, zone: ZoneInfo) -> IntArray:
    """Epoch milliseconds shifted to the zone's wall clock (for day and time-of-day maths).

    The zone's offset is looked up once per quarter hour of the span, not per timestamp.
    """
    if t_ms.size == 0:
        return t_ms.copy()
    first = int(t_ms.min()) // _SLOT_MS
    last = int(t_ms.max()) // _SLOT_MS
    offsets = np.array(
        [_offset_ms(slot * _SLOT_MS, zone) for slot in range(first, last + 1)], dtype=np.int64
    )
    return t_ms + offsets[t_ms // _SLOT_MS - first]


def _offset_ms(t_ms: int, zone: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)
