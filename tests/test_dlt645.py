"""DL/T 645-2007: frames checked against captured exchanges, BCD values, and the agent's driver
against simulated meters on a serial line (socat) and behind a TCP transparent converter."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from edge_agent.dlt645 import (
    BROADCAST,
    Dlt645Error,
    Dlt645Profile,
    ErrorWord,
    Frame,
    MeterRefused,
    decode_bcd,
    decode_frame,
    encode_bcd,
    get_dlt645_profile,
    read_address_request,
    read_answer,
    read_request,
)
from edge_agent.dlt645_driver import (
    Dlt645Driver,
    Dlt645Link,
    Dlt645ReadError,
    Dlt645TimeoutError,
)
from edge_agent.profiles import NO_RATIOS, Ratios
from edge_agent.settings import RtuTransport, TcpTransport
from parkwatch.site import Park
from simulators.dlt645 import Dlt645Bus, Dlt645SerialServer, Dlt645TcpServer, ServedDlt645Meter
from simulators.modbus import ModelFeed, PtyPair
from simulators.model import ParkModel

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000
PROFILE = "dlt645-2007-3ph"


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- frames, from exchanges captured with real meters --------------------------------------
# A debugging log of a DL/T 645-2007 meter at address 000000000161 (public write-up of a
# meter session): reading forward active energy (00010000) and phase A voltage (02010100).
ENERGY_REQUEST = "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16"
ENERGY_ANSWER = "68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"  # 000000.26 kWh
VOLTAGE_REQUEST = "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 34 34 35 17 16"
VOLTAGE_ANSWER = "68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"  # 100.1 V
# the broadcast forms every DL/T 645 tutorial quotes
READ_ADDRESS = "68 AA AA AA AA AA AA 68 13 00 DF 16"
BROADCAST_ENERGY = "68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16"


def test_requests_are_the_captured_bytes() -> None:
    assert read_request("000000000161", 0x00010000).encode() == hexbytes(ENERGY_REQUEST)
    assert read_request("000000000161", 0x02010100).encode() == hexbytes(VOLTAGE_REQUEST)
    assert read_address_request().encode(wake_up=False) == hexbytes(READ_ADDRESS)
    assert read_request(BROADCAST, 0x00010000).encode(wake_up=False) == hexbytes(BROADCAST_ENERGY)


def test_answers_decode_to_the_captured_values() -> None:
    frame, used = decode_frame(hexbytes(ENERGY_ANSWER))
    assert frame is not None
    assert used == len(hexbytes(ENERGY_ANSWER))
    assert frame.address == "000000000161"
    assert frame.is_response
    assert not frame.is_error
    assert decode_bcd(read_answer(frame, 0x00010000), "XXXXXX.XX") == 0.26
    frame, _ = decode_frame(hexbytes(VOLTAGE_ANSWER))
    assert frame is not None
    assert decode_bcd(read_answer(frame, 0x02010100), "XXX.X") == 100.1
    # the simulator's side encodes the same bytes
    assert frame.encode(wake_up=False) == hexbytes(VOLTAGE_ANSWER)


def test_frames_are_found_in_a_noisy_stream() -> None:
    answer = hexbytes(VOLTAGE_ANSWER)
    stream = bytearray(b"\x00\x68\x12" + b"\xfe" * 4 + answer + answer[:7])
    frame, used = decode_frame(stream)
    assert frame is not None  # noise (a stray 68) and wake-up bytes skipped
    del stream[:used]
    assert decode_frame(stream) == (None, 0)  # an incomplete frame waits for its rest
    corrupt = bytearray(answer)
    corrupt[-2] ^= 0xFF  # checksum
    frame, used = decode_frame(bytes(corrupt) + answer)
    assert frame is not None
    assert used == 2 * len(answer)  # the corrupt one is skipped, the good one taken


def test_error_answers_and_wrong_answers() -> None:
    refused = Frame("000000000161", 0xD1, bytes([ErrorWord.NO_DATA]))
    with pytest.raises(MeterRefused, match="no_data") as info:
        read_answer(refused, 0x00010000)
    assert ErrorWord.NO_DATA in info.value.status
    frame, _ = decode_frame(hexbytes(VOLTAGE_ANSWER))
    assert frame is not None
    with pytest.raises(Dlt645Error, match="asked 00010000"):
        read_answer(frame, 0x00010000)
    with pytest.raises(Dlt645Error, match="12 digits"):
        read_request("12345", 0x00010000).encode()


def test_bcd_values() -> None:
    assert encode_bcd(0.26, "XXXXXX.XX") == bytes([0x26, 0, 0, 0])
    assert encode_bcd(-12.3456, "XX.XXXX", signed=True) == bytes([0x56, 0x34, 0x92])
    assert decode_bcd(bytes([0x56, 0x34, 0x92]), "XX.XXXX", signed=True) == -12.3456
    assert decode_bcd(encode_bcd(-0.866, "X.XXX", signed=True), "X.XXX", signed=True) == -0.866
    assert encode_bcd(123.4567, "XXX.X") == bytes([0x35, 0x12])  # rounded to the format's step
    assert encode_bcd(1e9, "XXXXXX.XX") == bytes([0x99] * 4)  # saturates, as a register does
    with pytest.raises(Dlt645Error, match="not BCD"):
        decode_bcd(b"\xff\xff", "XXX.X")


def test_block_answer_with_fewer_tariffs() -> None:
    profile = get_dlt645_profile(PROFILE)
    energy = profile.reads[0]
    assert energy.di == "0001FF00"
    two_tariffs = b"".join(encode_bcd(v, "XXXXXX.XX") for v in (100.5, 40.25, 60.25))
    assert energy.decode(two_tariffs, Ratios(ct=10)) == {
        "e_kwh": 1005.0,
        "e_t1_kwh": 402.5,
        "e_t2_kwh": 602.5,
    }
    phases = profile.reads[2]  # three voltages → their mean
    raw = b"".join(encode_bcd(v, "XXX.X") for v in (229.9, 230.1, 231.0))
    assert phases.decode(raw) == {"v_v": pytest.approx(230.333, abs=1e-3)}


def test_profile_refuses_an_unquoted_data_identifier() -> None:
    with pytest.raises(ValueError, match="in quotes"):
        Dlt645Profile.model_validate(
            {
                "protocol": "dlt645",
                "name": "x",
                "vendor": "x",
                "model": "x",
                # what YAML makes of an unquoted 02030000: the octal number 0o2030000
                "reads": [{"di": 0o2030000, "values": [{"quantity": "p_kw", "format": "X.X"}]}],
            }
        )


def test_profile_refuses_a_quantity_read_twice() -> None:
    with pytest.raises(ValueError, match="read by both"):
        Dlt645Profile.model_validate(
            {
                "protocol": "dlt645",
                "name": "x",
                "vendor": "x",
                "model": "x",
                "reads": [
                    {"di": "02030000", "values": [{"quantity": "p_kw", "format": "XX.XXXX"}]},
                    {"di": "02030100", "values": [{"quantity": "p_kw", "format": "XX.XXXX"}]},
                ],
            }
        )


# --- the driver against simulated meters ----------------------------------------------------


@pytest.fixture
def feed(demo_park_path: Path) -> ModelFeed:
    feed = ModelFeed(ParkModel(Park.from_yaml(demo_park_path), seed=5))
    feed.refresh(T0)
    return feed


def served(feed: ModelFeed, meter: str, address: str, ratios: Ratios) -> ServedDlt645Meter:
    return ServedDlt645Meter(
        address, get_dlt645_profile(PROFILE), feed.provider(meter), ratios, meter
    )


def assert_matches_model(got: dict[str, float], want: dict[str, float], ratios: Ratios) -> None:
    profile = get_dlt645_profile(PROFILE)
    assert set(got) == set(profile.quantities)
    for quantity, value in got.items():
        step = {"e": 0.01, "v": 0.1, "i": 0.001, "p": 1e-4, "q": 1e-4, "f": 0.01}[quantity[0]]
        factor = {"pf": 1.0, "f_hz": 1.0, "v_v": ratios.pt, "i_a": ratios.ct}
        tolerance = step * factor.get(quantity, ratios.ct * ratios.pt) / 2 + 1e-9
        if quantity == "v_v":  # the mean of three phases, each rounded
            tolerance *= 1.5
        expected = want[quantity]
        assert math.isclose(value, expected, abs_tol=tolerance), (quantity, value, expected)


@pytest.mark.integration
async def test_meters_behind_a_tcp_transparent_converter(feed: ModelFeed) -> None:
    ratios = Ratios(ct=40)
    bus = Dlt645Bus(
        [
            served(feed, "steelco-c1", "000000000161", ratios),
            served(feed, "steelco-c2", "000000000162", ratios),
        ]
    )
    async with Dlt645TcpServer(bus) as server:
        assert isinstance(server, Dlt645TcpServer)
        link = Dlt645Link(TcpTransport(host="127.0.0.1", port=server.port))
        profile = get_dlt645_profile(PROFILE)
        c1 = Dlt645Driver("steelco-c1", "000000000161", profile, link, ratios, timeout_s=1.0)
        c2 = Dlt645Driver("steelco-c2", "000000000162", profile, link, ratios, timeout_s=1.0)
        nobody = Dlt645Driver("nobody", "000000000999", profile, link, ratios, timeout_s=0.3)
        try:
            assert_matches_model(await c1.read(), feed.values("steelco-c1"), ratios)
            with pytest.raises(Dlt645TimeoutError):
                await nobody.read()  # an address nobody has: silence, a timeout
            assert_matches_model(await c2.read(), feed.values("steelco-c2"), ratios)
            feed.refresh(T0 + 60_000)  # live values: the next model step is served
            assert_matches_model(await c1.read(), feed.values("steelco-c1"), ratios)
            feed.failed.add("steelco-c2")  # the meter answers "error" while it is failed
            with pytest.raises(Dlt645ReadError, match="refused: other"):
                await c2.read()
        finally:
            await link.aclose()
    assert link.stats.requests >= 7 * 3
    assert link.stats.busy_s > 0


async def test_meter_on_a_serial_line_found_by_broadcast(feed: ModelFeed, tmp_path: Path) -> None:
    ratios = Ratios(ct=20)
    with PtyPair(tmp_path / "pty") as pty:
        bus = Dlt645Bus([served(feed, "steelco-c3", "000012345678", ratios)], baudrate=9600)
        async with Dlt645SerialServer(bus, serial_port=pty.device_end):
            # a pseudo-terminal takes no parity: 8N1 here, where a real meter line is 8E1
            line = RtuTransport(kind="serial", port=pty.gateway_end, baudrate=9600)
            link = Dlt645Link(line)
            profile = get_dlt645_profile(PROFILE)
            driver = Dlt645Driver("steelco-c3", "auto", profile, link, ratios, timeout_s=1.0)
            try:
                got = await driver.read()
                assert driver.identity == "000012345678"  # asked the line who is there
                assert_matches_model(got, feed.values("steelco-c3"), ratios)
            finally:
                await link.aclose()


@pytest.mark.integration
async def test_a_data_identifier_the_meter_lacks_is_left_out(feed: ModelFeed) -> None:
    full = get_dlt645_profile(PROFILE)
    # the simulated meter knows no reactive power; the agent's map asks for it
    lacking = full.model_copy(update={"reads": tuple(r for r in full.reads if r.di != "02040000")})
    bus = Dlt645Bus(
        [ServedDlt645Meter("000000000161", lacking, feed.provider("steelco-c1"), NO_RATIOS)]
    )
    async with Dlt645TcpServer(bus) as server:
        assert isinstance(server, Dlt645TcpServer)
        link = Dlt645Link(TcpTransport(host="127.0.0.1", port=server.port))
        driver = Dlt645Driver("steelco-c1", "000000000161", full, link, timeout_s=1.0)
        try:
            first = await driver.read()
            second = await driver.read()
        finally:
            await link.aclose()
    assert "q_kvar" not in first
    assert "p_kw" in first
    assert set(second) == set(first)
    assert bus.requests == 2 * len(full.reads) - 1  # the unknown DI was asked once only


@pytest.mark.integration
async def test_paced_bus_takes_the_wire_time(feed: ModelFeed) -> None:
    profile = get_dlt645_profile(PROFILE)
    bus = Dlt645Bus(
        [served(feed, "steelco-c1", "000000000161", NO_RATIOS)],
        baudrate=2400,
        paced=True,
        turnaround_s=0.0,
    )
    read = profile.reads[4]  # total active power: 16 bytes out (with FE), 19 back
    assert read.di == "02030000"
    async with Dlt645TcpServer(bus) as server:
        assert isinstance(server, Dlt645TcpServer)
        link = Dlt645Link(TcpTransport(host="127.0.0.1", port=server.port))
        one = profile.model_copy(update={"reads": (read,)})
        driver = Dlt645Driver("steelco-c1", "000000000161", one, link, timeout_s=2.0)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await driver.read()
            took = loop.time() - started
        finally:
            await link.aclose()
    wire = (16 + 19) * 11 / 2400  # 0.16 s at 2400 baud
    assert took >= wire
