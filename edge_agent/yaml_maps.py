"""Loading the agent's maps (register maps, JSON maps): pydantic models kept as YAML files,
one per device type, shipped with the agent or added from the user's own directories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_map(model: type[M], path: Path, error: type[Exception], what: str) -> M:
    """One map; any problem with the file becomes ``error`` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return model.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise error(f"{what} {path}: {exc}") from exc


def load_maps(
    model: type[M], directories: Iterable[Path], error: type[Exception], what: str
) -> dict[str, M]:
    """Every ``*.yaml`` map in ``directories`` by name; a later directory may replace a map."""
    out: dict[str, M] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.yaml")):
            loaded = load_map(model, path, error, what)
            out[getattr(loaded, "name")] = loaded  # noqa: B009 - every map model has a name
    return out


def pick(maps: Mapping[str, M], name: str, error: type[Exception], what: str) -> M:
    try:
        return maps[name]
    except KeyError:
        known = ", ".join(sorted(maps))
        raise error(f"no {what} {name!r}; known: {known}") from None
