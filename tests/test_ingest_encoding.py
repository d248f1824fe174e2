"""Ingest's line-protocol encoding — the compiled one (short exact decimals, else ``repr``) and
the Python reference (one orjson pass over a chunk's values) — against the real InfluxDB: every
float comes back exactly as it went in, whatever form it is written in (``1e+16``; ``1e-7`` or
``1e-07``; ``-0.0``), and qualities other than ``ok`` travel as the ``quality`` field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.service import encode_lines, encode_lines_py
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import AcceptedReading

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

VALUES = [1e16, 1e-7, -0.0, 123456789.12345679, 0.1 + 0.2, 5e11, -4.25e-300, 412.0, 7.0e22]


@pytest.mark.parametrize("encode", [encode_lines, encode_lines_py])
async def test_every_float_round_trips(
    influx_settings: InfluxSettings,
    demo_park_path: Path,
    encode: Callable[[list[AcceptedReading]], list[str]],
) -> None:
    meter = SiteRegistry([Park.from_yaml(demo_park_path)]).park_meters("lj-demo")["steelco-main"]
    t0 = 1_732_411_200_000
    readings = [
        AcceptedReading(meter, t0 + i, {"p_kw": v, "e_kwh": float(i)}, "ok" if i % 2 else "stale")
        for i, v in enumerate(VALUES)
    ]
    lines = encode(readings)
    assert lines[0] == (
        "electricity,enterprise=steelco,meter=steelco-main,park=lj-demo "
        f'p_kw=1e+16,e_kwh=0.0,quality="stale" {t0}'
    )
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        async with InfluxWriter(influx_settings) as writer:
            await writer.write_now(lines)
        [series] = await reader.query('SELECT p_kw, e_kwh, quality FROM "electricity"')
    assert [row[1] for row in series.values] == VALUES
    assert [row[2] for row in series.values] == [float(i) for i in range(len(VALUES))]
    assert [row[3] for row in series.values] == [None if i % 2 else "stale" for i in range(9)]
