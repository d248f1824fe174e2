"""Every device profile the agent knows, whatever the protocol: Modbus register maps, DL/T 645
maps and OPC UA node maps, built in or from the user's ``profile_dirs``.

A profile file says its protocol (``protocol: dlt645`` / ``opcua``; without it, a Modbus
register map), so one directory of the user's own maps can hold all three kinds. A device in
``gateway.yaml`` names a profile, and the profile's protocol decides how the device is read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from edge_agent import dlt645, opcua, profiles
from edge_agent.dlt645 import Dlt645Profile
from edge_agent.opcua import OpcUaProfile
from edge_agent.profiles import MeterProfile, ProfileError
from edge_agent.yaml_maps import pick

Profile = MeterProfile | Dlt645Profile | OpcUaProfile
BUILTIN_DIRS = (profiles.MAPS_DIR, dlt645.MAPS_DIR, opcua.MAPS_DIR)
_MODELS: dict[str, type[Profile]] = {
    "modbus": MeterProfile,
    "dlt645": Dlt645Profile,
    "opcua": OpcUaProfile,
}


def load_profile_file(path: Path) -> Profile:
    """One map of any protocol; a problem with the file is a :class:`ProfileError` naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        kind = data.get("protocol", "modbus") if isinstance(data, dict) else "modbus"
        model = _MODELS.get(kind)
        if model is None:
            raise ProfileError(f"profile {path}: protocol {kind!r}; known: {sorted(_MODELS)}")
        return model.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"profile {path}: {exc}") from exc


def load_catalog(directories: Iterable[Path]) -> dict[str, Profile]:
    """Every ``*.yaml`` profile in ``directories``; a later one may replace an earlier one."""
    out: dict[str, Profile] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.yaml")):
            profile = load_profile_file(path)
            out[profile.name] = profile
    return out


@functools.cache
def builtin_catalog() -> Mapping[str, Profile]:
    return load_catalog(BUILTIN_DIRS)


def get_any_profile(name: str, extra: Mapping[str, Profile] | None = None) -> Profile:
    return pick({**builtin_catalog(), **(extra or {})}, name, ProfileError, "meter profile")


def protocol_of(profile: Profile) -> str:
    return profile.protocol
