"""How the ``parkwatch`` command answers a mistake: one or two lines and a non-zero exit.

A missing file, a broker or database that cannot be reached, an invalid setting (from an
option or from a ``PW_…`` variable): ``CommandGroup`` catches what any sub-command raises and
``explain`` turns it into a short message. Exit code 2 says the input was wrong (as click's own
usage errors do), 1 that something it needed was not there. ``parkwatch --debug …`` (or
``PW_DEBUG=1``) lets the exception through with its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import yaml
from pydantic import ValidationError
from typer.core import TyperGroup

if TYPE_CHECKING:
    from parkwatch.site import Park

DEBUG_KEY = "parkwatch.debug"
SHOWN_ERRORS = 2  # a ValidationError with more lists only this many
ECHO_CHARS = 60  # of an invalid input
# a connection model built on its own (``MqttSettings(url=…)``) names its fields without the
# prefix they have inside a service's settings; give it back so "url" reads "mqtt.url"
NESTED = {"MqttSettings": "mqtt", "InfluxSettings": "influx"}


class UserError(Exception):
    """A mistake in what the user gave, already worded for them."""


def _cut(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else f"{text[: ECHO_CHARS - 1]}…"


def _problems(exc: ValidationError) -> str:
    """Up to ``SHOWN_ERRORS`` of a ValidationError's errors, as "where (got …): why"."""
    problems = []
    for error in exc.errors()[:SHOWN_ERRORS]:
        where = ".".join(str(part) for part in (NESTED.get(exc.title, ""), *error["loc"]) if part)
        message = error["msg"].removeprefix("Value error, ")
        given = f" (got {_cut(error['input'])})" if "input" in error else ""
        problems.append(f"{where or exc.title}{given}: {message}")
    more = exc.error_count() - SHOWN_ERRORS
    if more > 0:
        problems[-1] += f" (and {more} more)"
    return "\n       ".join(problems)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside task-group wrappers."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _yaml_problem(exc: yaml.YAMLError, path: Path | None = None) -> str:
    """ "FILE: not valid YAML (line N): why" — a mark names the file it was read from."""
    mark = getattr(exc, "problem_mark", None)
    at = f" (line {mark.line + 1})" if mark is not None else ""
    if path is None and mark is not None and not str(mark.name).startswith("<"):
        path = Path(mark.name)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{f'{path}: ' if path else ''}not valid YAML{at}: {problem}"


def load_park(path: Path) -> Park:
    """``Park.from_yaml``, with what is wrong in the file said in a line or two."""
    from parkwatch.site import Park

    try:
        return Park.from_yaml(path)
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise UserError(_yaml_problem(exc, path)) from exc
    except ValidationError as exc:
        raise UserError(f"{path}: not a usable park.yaml: {_problems(exc)}") from exc
    except ValueError as exc:
        raise UserError(f"{path}: not a usable park.yaml: {exc}") from exc


def explain(exc: BaseException) -> tuple[str, int]:
    """A short message for ``exc`` and the exit code that goes with it."""
    from aiomqtt import MqttError

    from parkwatch.influx import InfluxError

    exc = _leaf(exc)
    if isinstance(exc, UserError):
        return str(exc), 2
    if isinstance(exc, ValidationError):
        what = "setting" if exc.title in NESTED or exc.title.endswith("Settings") else exc.title
        return f"invalid {what} {_problems(exc)}", 2
    if isinstance(exc, MqttError):
        return f"MQTT broker: {exc} (check --mqtt-url and that the broker runs)", 1
    if isinstance(exc, InfluxError):
        return f"InfluxDB: {exc} (check --influx-url and that the database runs)", 1
    if isinstance(exc, yaml.YAMLError):
        return _yaml_problem(exc), 2
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}", 2
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror or exc}: is another instance running? choose another port", 1
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}", 1
    if isinstance(exc, ValueError):
        return str(exc) or type(exc).__name__, 2
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text} (parkwatch --debug … shows the traceback)", 1


class CommandGroup(TyperGroup):
    """The root command: runs a sub-command and explains what it raised, unless --debug."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context, a private module
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # typer's own: usage errors and BadParameter, typer.Exit, Ctrl-C at a prompt
        except BrokenPipeError:
            raise  # `parkwatch … | head`: click's main exits quietly
        except Exception as exc:
            if ctx.meta.get(DEBUG_KEY):
                raise
            message, code = explain(exc)
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code) from None
