"""``parkwatch accounting …``: the accounting's commands (the steel plant's half year)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

accounting_app = typer.Typer(help="Energy, carbon and cost accounting.", no_args_is_help=True)


@accounting_app.command("steel", short_help="The steel plant's half year, accounted.")
def steel(
    csv: Annotated[Path, typer.Option(help="the steel dataset")] = Path(
        "../shared/datasets/steel/steel_2018_h1.csv"
    ),
    tariff: Annotated[str, typer.Option(help="a built-in tariff")] = "kepco-industrial-2018",
) -> None:
    """The steel plant's half year end to end: monthly kWh, tce, CO₂, maximum demand, a
    time-of-use bill and the agreement of the tariff's periods with the dataset's Load_Type.
    Prints the README's table, then one JSON line."""
    from analytics.accounting.steel import account_steel, format_table
    from parkwatch.tariffs import builtin

    if not csv.is_file():
        raise typer.BadParameter(f"{csv} not found", param_hint="--csv")
    result = account_steel(csv, builtin(tariff))
    typer.echo(format_table(result), err=True)
    typer.echo(json.dumps(dataclasses.asdict(result)))


@accounting_app.command(
    "steel-report", short_help="The steel plant's monthly reports (CSV, HTML, PDF)."
)
def steel_report(
    out: Annotated[Path, typer.Option(help="directory the reports are written to")],
    csv: Annotated[Path, typer.Option(help="the steel dataset")] = Path(
        "../shared/datasets/steel/steel_2018_h1.csv"
    ),
    month: Annotated[str, typer.Option(help="the month reported")] = "2018-01",
) -> None:
    """The steel plant through the whole platform: its readings as a meter's register in a
    throwaway InfluxDB, the analytics' rollup job over the half year, and the API's monthly
    report (CSV, HTML, PDF; zh and en) written to OUT. Prints the English CSV."""
    import asyncio
    import tempfile

    from parkwatch.stack import LocalStack

    if not csv.is_file():
        raise typer.BadParameter(f"{csv} not found", param_hint="--csv")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp)) as stack:
        written = asyncio.run(write_steel_report(stack.influx_url, csv, month, out))
    for path in written:
        typer.echo(f"wrote {path}", err=True)
    typer.echo((out / f"steel-{month}-en.csv").read_text(encoding="utf-8-sig"))


STEEL_PARK = {
    "park": "gwangyang",
    "name": "DAEWOO Steel, Gwangyang (UCI steel dataset)",
    "timezone": "Asia/Seoul",
    "tariffs": {"electricity": "kepco-industrial-2018"},
    # no Korean grid factor is in the data files: the factor the dataset's own CO2 column
    # implies (Σ tCO2 / Σ MWh over the half year) stands in, as a park override
    "accounting": {"coefficients": {"electricity": {"co2_kg": 0.4237}}},
    "enterprises": [
        {
            "id": "daewoo",
            "name": "DAEWOO Steel",
            "workshops": [
                {"id": "plant", "meters": [{"id": "steel-main", "utility": "electricity"}]}
            ],
        }
    ],
}


async def write_steel_report(
    influx_url: str, csv: Path, month: str, out: Path, database: str = "steel"
) -> list[Path]:
    import numpy as np

    from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention
    from analytics.accounting.steel import QUARTER_MS, read_steel
    from api.common import State
    from api.reports import build_report, render_csv, render_html, render_pdf
    from api.settings import ApiSettings
    from parkwatch.influx import InfluxReader, InfluxWriter
    from parkwatch.lineprotocol import encode_point
    from parkwatch.settings import InfluxSettings
    from parkwatch.site import Park, SiteRegistry

    settings = InfluxSettings(url=influx_url, database=database)
    park = Park.model_validate(STEEL_PARK)
    data = read_steel(csv)
    t = np.r_[data.end_ms[0] - QUARTER_MS, data.end_ms]
    register = np.r_[0.0, np.cumsum(data.kwh)]
    tags = {"park": park.park, "enterprise": "daewoo", "meter": "steel-main"}
    lines = [
        encode_point("electricity", tags, {"e_kwh": float(v)}, int(ti))
        for ti, v in zip(t.tolist(), register.tolist(), strict=True)
    ]
    # the 15-minute demand analytics would have written: each interval's mean power
    lines += [
        encode_point(
            "demand_15m",
            {"park": park.park, "meter": "steel-main"},
            {"p_kw_avg": float(kwh * 4)},
            int(end - QUARTER_MS),
        )
        for end, kwh in zip(data.end_ms.tolist(), data.kwh.tolist(), strict=True)
    ]
    end_ms = int(t[-1])
    config = RollupConfig(recent_s=(end_ms - int(t[0])) / 1000 + 3600)
    async with InfluxReader(settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(settings) as writer:
            await writer.write(lines)
        async with InfluxWriter(settings, retention_policy=config.retention_policy) as writer:
            await RollupJob(park, reader, writer, config).run(end_ms)
        state = State(ApiSettings(influx=settings), SiteRegistry([park]), reader)
        report = await build_report(state, park, month, "daewoo")
        written = []
        for lang in ("en", "zh"):
            for ext, body in (
                ("csv", render_csv(report, lang)),
                ("html", render_html(report, lang)),
                ("pdf", render_pdf(report, lang)),
            ):
                path = out / f"steel-{month}-{lang}.{ext}"
                path.write_bytes(body)
                written.append(path)
    return written
