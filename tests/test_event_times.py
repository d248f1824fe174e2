"""Event and window times as users write them: ISO 8601 / RFC 3339 with an offset, or epoch ms."""

from __future__ import annotations

import pytest

from parkwatch.events import parse_time_ms

T0 = 1_732_492_800_000  # 2024-11-25T00:00:00Z


@pytest.mark.parametrize(
    "text",
    ["2024-11-25T00:00:00Z", "2024-11-25t00:00:00z", "2024-11-25T08:00:00+08:00",
     "2024-11-25 08:00:00.000+08:00", T0],
)  # fmt: skip
def test_every_spelling_of_one_moment_is_the_same_millisecond(text: str | int) -> None:
    assert parse_time_ms(text) == T0


def test_a_time_without_an_offset_is_refused_with_its_text() -> None:
    with pytest.raises(ValueError, match="'2024-11-25T00:00:00' has no UTC offset"):
        parse_time_ms("2024-11-25T00:00:00")
