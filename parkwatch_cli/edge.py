"""``parkwatch edge``: run a gateway, and the integrator's tools around it.

* ``parkwatch edge --config gateway.yaml`` — run the gateway agent;
* ``parkwatch edge probe`` — find the byte/word order and address offset of a Modbus meter
  for a profile, and which unit ids answer on a line;
* ``parkwatch edge profiles`` — the profiles the agent knows (built in and ``--profile-dir``);
* ``parkwatch edge simulate`` — serve a simulated gateway's meters over Modbus, DL/T 645 and
  OPC UA, and write the gateway.yaml that reads them.

Service modules are imported inside each command, so the CLI starts fast.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from parkwatch.logs import setup_logging

edge_app = typer.Typer(
    help="A gateway: polls its meters (Modbus, DL/T 645, OPC UA, MQTT-native), buffers on "
    "disk, publishes; and the tools to set one up.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@edge_app.callback()
def edge(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="gateway.yaml", exists=True, dir_okay=False)
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="structured JSON logs")] = False,
) -> None:
    """Run the gateway agent (``--config gateway.yaml``), or one of the tools below."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    from edge_agent.service import run_edge
    from edge_agent.settings import EdgeSettings
    from parkwatch_cli.runner import run_service

    settings = EdgeSettings.from_yaml(config)
    setup_logging(log_level or settings.log_level, json_logs)
    # SIGTERM (systemd, docker stop) stops as cleanly as Ctrl-C: its status goes "offline"
    run_service(run_edge(settings))


def _units(text: str) -> list[int]:
    """``"1-10,20"`` → [1 … 10, 20]."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise typer.BadParameter(f"unit ids are like 1-10,20, got {text!r}") from None
        if not 0 <= first <= last <= 255:
            raise typer.BadParameter(f"unit ids are 0..255, got {part!r}")
        out.extend(range(first, last + 1))
    return out


@edge_app.command(short_help="Find a Modbus meter's word order, offset and unit ids.")
def probe(
    profile: Annotated[
        str | None, typer.Option(help="the profile to try (e.g. eastron-sdm630)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Modbus TCP host (or a converter)")] = None,
    port: Annotated[int, typer.Option(help="Modbus TCP port")] = 502,
    serial: Annotated[str | None, typer.Option(help="serial port, e.g. /dev/ttyUSB0")] = None,
    baudrate: Annotated[int, typer.Option(help="--serial: the line's baud rate")] = 9600,
    parity: Annotated[str, typer.Option(help="N, E or O")] = "N",
    unit: Annotated[int, typer.Option(help="the unit id to probe")] = 1,
    scan: Annotated[str | None, typer.Option(help="also scan unit ids, e.g. 1-32")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 1.0,
    pause: Annotated[float, typer.Option(help="seconds between the two reads")] = 2.0,
    profile_dir: Annotated[list[Path] | None, typer.Option(help="your own profiles")] = None,
) -> None:
    """Find a Modbus meter's word/byte order and address offset, and the unit ids on a line.

    Every combination is scored by how plausible the profile's values come out; without
    --profile, every known Modbus profile is tried and the best one probed."""
    from edge_agent.catalog import builtin_catalog, get_any_profile, load_catalog
    from edge_agent.drivers import ModbusLink
    from edge_agent.probe import identify, scan_units
    from edge_agent.probe import probe as run_probe
    from edge_agent.profiles import MeterProfile, ProfileError
    from edge_agent.settings import RtuTransport, TcpTransport

    setup_logging("WARNING")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the probe reports failures
    if (host is None) == (serial is None):
        raise typer.BadParameter("give --host (Modbus TCP) or --serial (Modbus RTU)")
    transport: TcpTransport | RtuTransport
    if host is not None:
        transport = TcpTransport(host=host, port=port)
    else:
        assert serial is not None
        if parity not in ("N", "E", "O"):
            raise typer.BadParameter("--parity is N, E or O")
        transport = RtuTransport(port=serial, baudrate=baudrate, parity=parity)
    try:
        catalog = load_catalog(profile_dir or [])
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile-dir") from None
    meter_profile: MeterProfile | None = None
    if profile is not None:
        try:
            found = get_any_profile(profile, catalog)
        except ProfileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--profile") from None
        if not isinstance(found, MeterProfile):
            raise typer.BadParameter(
                f"{profile} is a {found.protocol} profile: the probe is for Modbus"
            )
        meter_profile = found
    # no profile: every built-in and user Modbus map is tried on the unit
    candidates = [
        p for p in {**builtin_catalog(), **catalog}.values() if isinstance(p, MeterProfile)
    ]  # fmt: skip

    async def main() -> None:
        link = ModbusLink(transport, timeout)
        chosen = meter_profile
        try:
            if scan is not None:
                for answer in await scan_units(link, _units(scan), chosen):
                    typer.echo(f"unit {answer.unit}: {answer.detail}")
            if chosen is None and scan is None:
                matches = await identify(link, unit, candidates, pause_s=min(pause, 0.5))
                if not matches:
                    typer.echo(f"no known profile reads plausible values from unit {unit}")
                for m in matches[:5]:
                    best = m.report.best
                    assert best is not None
                    typer.echo(
                        f"{m.profile.name:26} {best.plausible}/{len(best.verdicts)} plausible "
                        f"(offset {best.offset:+d}, {best.order})"
                    )
                if matches:
                    chosen = matches[0].profile
            if chosen is not None:
                report = await run_probe(link, unit, chosen, pause_s=pause)
                typer.echo(f"\n{chosen.name} on unit {unit} of {transport.key}:")
                typer.echo(f"{'offset':>6} {'order':5} {'plausible':>9}  values")
                for c in report.candidates[:6]:
                    shown = ", ".join(
                        f"{v.quantity}={v.value:.6g}" if v.value is not None else f"{v.quantity}=?"
                        for v in c.verdicts
                    )
                    score = f"{c.plausible}/{len(c.verdicts)}"
                    typer.echo(f"{c.offset:>+6d} {c.order.value:5} {score:>9}  {shown}")
                for offset, why in sorted(report.unreadable.items()):
                    typer.echo(f"{offset:>+6d} unreadable: {why}")
                typer.echo(f"\n{report.advice(chosen)}")
        finally:
            await link.aclose()

    asyncio.run(main())


@edge_app.command()
def profiles(
    profile_dir: Annotated[list[Path] | None, typer.Option(help="your own profiles")] = None,
) -> None:
    """The profiles the agent knows: name, protocol, utility, product."""
    from edge_agent.catalog import builtin_catalog, load_catalog
    from edge_agent.profiles import ProfileError

    try:
        known = {**builtin_catalog(), **load_catalog(profile_dir or [])}
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile-dir") from None
    for name in sorted(known):
        p = known[name]
        note = " (illustrative)" if p.illustrative else ""
        typer.echo(f"{name:26} {p.protocol:7} {p.utility.value:12} {p.vendor}: {p.model}{note}")


@edge_app.command(short_help="Serve a gateway's meters; write its gateway.yaml.")
def simulate(
    gateway: Annotated[str, typer.Option(help="the gateway of the park to serve")] = "gw-steelco",
    site: Annotated[Path | None, typer.Option(help="park.yaml; the demo park by default")] = None,
    dlt645: Annotated[list[str] | None, typer.Option(help="serve this meter as DL/T 645")] = None,
    opcua: Annotated[list[str] | None, typer.Option(help="serve this meter over OPC UA")] = None,
    config_out: Annotated[Path, typer.Option(help="write the gateway.yaml here")] = Path(
        "gateway.yaml"
    ),
    mqtt_url: Annotated[str, typer.Option(help="the broker in the gateway.yaml")] = (
        "mqtt://127.0.0.1:1883"
    ),
    interval: Annotated[float, typer.Option(help="poll interval in the gateway.yaml")] = 5.0,
    seed: Annotated[int, typer.Option(help="the same seed, the same readings")] = 0,
) -> None:
    """Serve a gateway's meters over Modbus, DL/T 645 and OPC UA; write its gateway.yaml.

    Modbus TCP for most, DL/T 645 behind a simulated TCP converter and an OPC UA controller
    for the meters named; until Ctrl-C."""
    from parkwatch.site import Park
    from parkwatch_cli.runner import run_service
    from simulators import DEMO_PARK
    from simulators.gateway import MultiProtocolGateway

    setup_logging("INFO")
    park = Park.from_yaml(site or DEMO_PARK)

    async def main() -> None:
        sim = MultiProtocolGateway(park, gateway, dlt645=dlt645 or [], opcua=opcua or [], seed=seed)
        async with sim:
            sim.write_gateway_config(config_out, mqtt_url=mqtt_url, poll_interval_s=interval)
            typer.echo(f"wrote {config_out}; serving until Ctrl-C", err=True)
            await asyncio.Event().wait()

    run_service(main())
