"""``parkwatch accounting …``: the accounting's commands (the steel plant's half year)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

accounting_app = typer.Typer(help="Energy, carbon and cost accounting.", no_args_is_help=True)


@accounting_app.command("steel")
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
