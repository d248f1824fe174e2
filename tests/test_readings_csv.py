"""The replay CSV format: what the writer writes the reader reads back; a user's file with its
columns in another order, a byte-order mark, ISO times or gzip works; every row that cannot be
used is reported with its line and reason while the good rows are kept; a file that is not a
readings file gets one clear error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from parkwatch.readings_csv import (
    HEADER,
    CsvBlocks,
    Readings,
    ReadingsFormatError,
    ReadingsWriter,
    read_readings,
)

T0 = 1_732_464_000_000  # 2024-11-24T16:00:00Z = 2024-11-25T00:00:00+08:00


def rows(r: Readings) -> list[tuple[int, str, str, float]]:
    return [
        (t, r.meters[m], r.quantities[q], v)
        for t, m, q, v in zip(
            r.t_ms.tolist(),
            r.meter_code.tolist(),
            r.quantity_code.tolist(),
            r.value.tolist(),
            strict=True,
        )
    ]


def write(path: Path, text: str, *, packed: bool = False) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if packed else data)
    return path


@pytest.mark.parametrize("packed", [True, False])
def test_what_the_writer_writes_reads_back_as_columns(tmp_path: Path, packed: bool) -> None:
    series = [("m1", "p_kw"), ("m1", "e_kwh"), ("m2", "flow_m3h")]
    blocks = CsvBlocks(series, np.array([3, 3, 2]))
    times = T0 + np.arange(3, dtype=np.int64) * 60_000
    values = np.array([[1.5, 100.25, 0.5], [-2.0, 100.5, 0.0], [3.125, 101.0, 12.34]])
    path = tmp_path / ("r.csv.gz" if packed else "r.csv")
    with ReadingsWriter(path, packed) as sink:
        text, _ = blocks.format(times, values)
        sink.write(text)
    readings = read_readings(path)
    assert readings.rows == len(readings) == 9
    assert readings.bad_rows == []
    assert readings.meters == ["m1", "m2"]
    assert readings.quantities == ["p_kw", "e_kwh", "flow_m3h"]
    assert readings.t_ms.dtype == np.int64
    assert readings.value.dtype == np.float64
    assert rows(readings) == [
        (int(t), m, q, float(round(v, 3)))
        for t, row in zip(times, values, strict=True)
        for (m, q), v in zip(series, row, strict=True)
    ]


def test_another_column_order_a_bom_extra_columns_and_loose_header_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "user.csv",
        "\ufeff Value ,Meter,unit,TIME,quantity\n"
        f"12.5,a1-main,kW,{T0},p_kw\n"
        f"13,a1-main,kW,{T0 + 60_000},p_kw\n",
    )
    readings = read_readings(path)
    assert rows(readings) == [(T0, "a1-main", "p_kw", 12.5), (T0 + 60_000, "a1-main", "p_kw", 13.0)]


def test_names_are_trimmed_and_one_name_is_one_code(tmp_path: Path) -> None:
    path = write(
        tmp_path / "spaces.csv",
        f"time,meter,quantity,value\n{T0},m1,p_kw,1\n{T0}, m1 ,p_kw ,2\n{T0},m2, p_kw,3\n",
    )
    readings = read_readings(path)
    assert (readings.meters, readings.quantities) == (["m1", "m2"], ["p_kw"])
    assert readings.meter_code.tolist() == [0, 0, 1]
    assert readings.quantity_code.tolist() == [0, 0, 0]


def test_iso_times_with_offsets_and_epoch_milliseconds_mix(tmp_path: Path) -> None:
    path = write(
        tmp_path / "iso.csv",
        "time,meter,quantity,value\n"
        "2024-11-25T00:00:00+08:00,m,p_kw,1\n"
        "2024-11-24T16:01:00Z,m,p_kw,2\n"
        "2024-11-25 00:02:00.250+0800,m,p_kw,3\n"
        "2024-11-25T00:03:00.123456+08:00,m,p_kw,4\n"
        f"{T0 + 240_000},m,p_kw,5\n"
        "2024-11-24t16:05:00z,m,p_kw,6\n",  # RFC 3339's lowercase separator and zone
    )
    readings = read_readings(path)
    assert readings.bad_rows == []
    assert readings.t_ms.tolist() == [
        T0, T0 + 60_000, T0 + 120_250, T0 + 180_123, T0 + 240_000, T0 + 300_000]  # fmt: skip


def test_every_unusable_row_is_reported_with_its_line_and_the_rest_is_kept(
    tmp_path: Path,
) -> None:
    lines = [
        "time,meter,quantity,value",  # 1
        f"{T0},m1,p_kw,1.5",  # 2  good
        "yesterday,m1,p_kw,2",  # 3  unparsable time
        "2024-11-25T00:05:00,m1,p_kw,3",  # 4  no offset
        f"{T0 + 60_000},m1,p_kw,",  # 5  empty value
        f"{T0 + 60_000},m1,p_kw,abc",  # 6  not a number
        f"{T0 + 60_000},m1,p_kw",  # 7  a field missing
        "",  # 8  empty line
        f"{T0 + 60_000},m1,p_kw,4,5",  # 9  a field too many
        f"{T0 + 60_000},m1,p_kw,nan",  # 10 not finite
        "1732464000,m1,p_kw,6",  # 11 seconds, not milliseconds
        f"{T0 + 60_000},,p_kw,7",  # 12 no meter
        f'{T0 + 120_000},m2,q_kvar," 8.25 "',  # 13 good: quoted, spaces trimmed
        f'{T0 + 120_000},m2,q_kvar,"1,5"',  # 14 a decimal comma
    ]
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    readings = read_readings(path)
    assert rows(readings) == [(T0, "m1", "p_kw", 1.5), (T0 + 120_000, "m2", "q_kvar", 8.25)]
    assert readings.line.tolist() == [2, 13]
    assert readings.rows == len(lines) - 1
    assert readings.meters == ["m1", "m2"]  # the bad rows' names are not kept
    reasons = {b.line: b.reason for b in readings.bad_rows}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    assert "'yesterday' is neither epoch milliseconds nor ISO 8601" in reasons[3]
    assert "has no UTC offset" in reasons[4]
    assert reasons[5] == "empty value"
    assert reasons[6] == "value 'abc' is not a number"
    assert reasons[7] == "3 fields where the header has 4"
    assert reasons[8] == "empty line"
    assert reasons[9] == "5 fields where the header has 4"
    assert reasons[10] == "value nan is not a finite number"
    assert "before 2000" in reasons[11]
    assert reasons[12] == "empty meter"
    assert reasons[14] == "value '1,5' is not a number"
    # a history's word-swapped floats can be kept
    kept = read_readings(path, finite=False)
    assert np.isnan(kept.value).sum() == 1
    assert 10 not in {b.line for b in kept.bad_rows}


def test_line_numbers_hold_in_a_large_file_read_in_parallel(tmp_path: Path) -> None:
    n = 300_000  # several of the reader's blocks
    broken = {1_000: "1,2", 150_000: "", 299_990: "x,y,z,w,v"}
    out = ["time,meter,quantity,value"]
    for k in range(n):
        out.append(broken.get(k + 2, f"{T0 + k * 1000},m{k % 7},p_kw,{k}"))
    path = write(tmp_path / "big.csv.gz", "\n".join(out) + "\n", packed=True)
    readings = read_readings(path)
    assert [b.line for b in readings.bad_rows] == sorted(broken)
    assert len(readings) == n - len(broken)
    good = [k for k in range(n) if k + 2 not in broken]
    np.testing.assert_array_equal(readings.value, np.array(good, dtype=np.float64))
    np.testing.assert_array_equal(readings.t_ms, T0 + np.array(good, dtype=np.int64) * 1000)
    np.testing.assert_array_equal(readings.line, np.array(good) + 2)


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    path = write(
        tmp_path / "plain-name.csv", f"time,meter,quantity,value\n{T0},m,p_kw,1\n", packed=True
    )
    assert rows(read_readings(path)) == [(T0, "m", "p_kw", 1.0)]


def test_a_file_without_the_columns_gets_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.csv", f"timestamp,meter,p_kw\n{T0},m,1\n")
    with pytest.raises(ReadingsFormatError) as caught:
        read_readings(path)
    message = str(caught.value)
    assert "no 'time', 'quantity', 'value' columns" in message
    assert "found 'timestamp,meter,p_kw'" in message
    assert "time,meter,quantity,value" in message
    with pytest.raises(ReadingsFormatError, match="in any order, separated by commas"):
        read_readings(
            write(tmp_path / "semicolons.csv", f"time;meter;quantity;value\n{T0};m;q;1\n")
        )
    with pytest.raises(ReadingsFormatError, match="empty file"):
        read_readings(write(tmp_path / "empty.csv", ""))
    with pytest.raises(ReadingsFormatError, match="'value' appears twice"):
        read_readings(write(tmp_path / "twice.csv", "time,meter,quantity,value,value\n"))
    latin = "time,meter,quantity,value\n" + f"{T0},m,q,1\n" * 5 + f"{T0},é,q,1\n"
    (tmp_path / "latin.csv").write_bytes(latin.encode("latin-1"))
    with pytest.raises(ReadingsFormatError, match="UTF-8"):
        read_readings(tmp_path / "latin.csv")


def test_a_header_alone_is_an_empty_set_of_readings(tmp_path: Path) -> None:
    readings = read_readings(write(tmp_path / "h.csv", HEADER.decode()))
    assert (len(readings), readings.rows, readings.bad_rows) == (0, 0, [])


def test_time_order_is_stable(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.csv",
        f"time,meter,quantity,value\n{T0 + 2},a,q,1\n{T0},b,q,2\n{T0 + 2},c,q,3\n{T0},d,q,4\n",
    )
    readings = read_readings(path)
    assert readings.time_order().tolist() == [1, 3, 0, 2]
