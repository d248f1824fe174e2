"""Counter events and repeated values flagged at the source, and the wire contract that
carries them to InfluxDB (the quality values ``rollover``, ``reset``, ``replaced``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from edge_agent.counters import SourceFlags
from edge_agent.dlt645 import get_dlt645_profile
from edge_agent.profiles import Ratios, get_profile
from ingest.service import encode_lines
from parkwatch.site import Park, SiteRegistry
from parkwatch.topics import DataTopic
from parkwatch.wire import encode_batch, parse_batch

T0 = 1_732_411_200_000
U32_001 = 2**32 * 0.01  # a uint32 counter of hundredths wraps here


def test_rollover_of_a_32_bit_register() -> None:
    flags = SourceFlags({"e_kwh": U32_001})
    assert flags.judge({"p_kw": 10.0, "e_kwh": U32_001 - 3.0}) == "ok"
    assert flags.judge({"p_kw": 11.0, "e_kwh": 2.5}) == "rollover"
    assert flags.judge({"p_kw": 12.0, "e_kwh": 4.0}) == "ok"


def test_rollover_of_a_16_bit_register_from_its_profile() -> None:
    # the modulus comes from the register map: uint16 × scale × ratio
    acrel = get_profile("acrel-dtsd-style")
    moduli = acrel.counter_moduli(Ratios(ct=40))
    assert moduli["e_kwh"] == pytest.approx(2**32 * 0.01 * 40)
    flags = SourceFlags({"vol_m3": 2**16 * 1.0})
    assert flags.judge({"flow_m3h": 3.0, "vol_m3": 65_530.0}) == "ok"
    assert flags.judge({"flow_m3h": 3.0, "vol_m3": 4.0}) == "rollover"


def test_dlt645_bcd_counter_wraps_at_its_digits() -> None:
    moduli = get_dlt645_profile("dlt645-2007-3ph").counter_moduli(Ratios(ct=2))
    assert moduli["e_kwh"] == pytest.approx(1_000_000 * 2)  # XXXXXX.XX kWh, secondary × CT
    flags = SourceFlags(moduli)
    flags.judge({"e_kwh": 1_999_990.0})
    assert flags.judge({"e_kwh": 30.0}) == "rollover"


def test_reset_and_replacement() -> None:
    flags = SourceFlags({"e_kwh": U32_001})
    flags.judge({"p_kw": 5.0, "e_kwh": 120_000.0})
    assert flags.judge({"p_kw": 5.0, "e_kwh": 1.5}) == "reset"  # cleared to zero
    assert flags.judge({"p_kw": 5.0, "e_kwh": 2.0}) == "ok"
    flags.judge({"p_kw": 5.0, "e_kwh": 90_000.0})  # (a forward jump is not judged)
    assert flags.judge({"p_kw": 5.0, "e_kwh": 40_000.0}) == "replaced"  # another meter's count
    # a meter that answers with another identity was swapped, whatever its counter says
    flags = SourceFlags()
    flags.judge({"e_kwh": 100.0}, identity="000000000161")
    assert flags.judge({"e_kwh": 101.0}, identity="000000000162") == "replaced"


def test_repeated_live_values_are_stale_but_zeros_are_not() -> None:
    flags = SourceFlags()
    flags.judge({"p_kw": 12.345, "e_kwh": 10.0})
    assert flags.judge({"p_kw": 12.345, "e_kwh": 10.0}) == "stale"
    assert flags.judge({"p_kw": 12.346, "e_kwh": 10.0}) == "ok"
    idle = SourceFlags()
    idle.judge({"flow_m3h": 0.0, "vol_m3": 500.0})
    assert idle.judge({"flow_m3h": 0.0, "vol_m3": 500.0}) == "ok"  # no flow at night


def test_flagged_readings_pass_ingest_and_are_stored_with_their_quality(
    demo_park_path: Path,
) -> None:
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    readings = [
        {"m": "steelco-main", "t": T0, "q": {"e_kwh": 3.5, "p_kw": 400.0}, "s": "rollover"},
        {"m": "steelco-furnace", "t": T0, "q": {"e_kwh": 0.5}, "s": "reset"},
        {"m": "steelco-air", "t": T0, "q": {"e_kwh": 7.0}, "s": "replaced"},
        {"m": "steelco-c1", "t": T0, "q": {"p_kw": 1.0}, "s": "no-such-quality"},
    ]
    payload = encode_batch("gw-steelco", 1, readings)
    parsed = parse_batch(payload, DataTopic("lj-demo", "gw-steelco"), registry, T0)
    assert [r.s for r in parsed.readings] == ["rollover", "reset", "replaced"]
    assert [r.reason.value for r in parsed.rejections] == ["bad_reading"]  # unknown: rejected
    lines = encode_lines(parsed.readings)
    assert lines[0].endswith(f',quality="rollover" {T0}')
    assert 'quality="reset"' in lines[1]
    assert 'quality="replaced"' in lines[2]
    assert orjson.loads(payload)["readings"][0]["s"] == "rollover"
