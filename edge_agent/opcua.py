"""OPC UA node maps: which nodes of a controller's server carry which quantities.

Chillers, compressor controllers and building controllers serve their values over OPC UA. A
map (``edge_agent/opcua_maps/*.yaml``) names, for one kind of controller, the namespace its
variables live in (by URI: the index a server gives a namespace may change when it restarts)
and each quantity's node id within it — ``s=…`` (string), ``i=…`` (numeric), ``g=…`` or
``b=…`` — where ``{device}`` stands for the device's own name from ``gateway.yaml`` (one map
serves every compressor of a house). ``value = node value × scale``.

The OPC UA status of each value becomes the reading's quality: *Good* is ``ok``; *Uncertain*
is ``stale`` for "last usable value" and ``estimated`` otherwise (a substituted or
sensor-degraded value); a *Bad* value is left out, never passed on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.yaml_maps import load_maps, pick
from parkwatch.quantities import QUANTITIES, Utility
from parkwatch.slugs import Slug

MAPS_DIR = Path(__file__).resolve().parent / "opcua_maps"

_STRICT = ConfigDict(extra="forbid", frozen=True)
_NODE = re.compile(r"^(s=.+|i=\d+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$")

# OPC UA status codes: the top two bits say Good (00), Uncertain (01) or Bad (10)
_SEVERITY_SHIFT = 30
UNCERTAIN_LAST_USABLE = 0x40900000


def quality_of(status: int) -> str | None:
    """An OPC UA status code → the reading quality; ``None`` for a Bad value."""
    severity = (status >> _SEVERITY_SHIFT) & 0b11
    if severity == 0:
        return "ok"
    if severity == 1:
        return "stale" if status & 0xFFFF0000 == UNCERTAIN_LAST_USABLE else "estimated"
    return None


class OpcUaNode(BaseModel):
    model_config = _STRICT

    quantity: str
    node: str  # within the map's namespace: s=…, i=…, g=…, b=…; {device} is filled in
    scale: Annotated[float, Field(gt=0)] = 1.0
    doc: str = ""

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        if not _NODE.match(value):
            raise ValueError(f"a node id is s=…, i=…, g=… or b=… (no ns=): {value!r}")
        return value


class OpcUaProfile(BaseModel):
    """A controller type's node map."""

    model_config = _STRICT

    protocol: Literal["opcua"]
    name: Slug
    vendor: str
    model: str
    utility: Utility
    namespace: str  # the namespace URI the nodes belong to
    source: str = ""
    source_version: str = ""  # the cited document's version or date, as printed on it
    illustrative: bool = False  # a layout of our own, not from a product manual
    nodes: tuple[OpcUaNode, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.nodes:
            raise ValueError("a map has at least one node")
        seen: set[str] = set()
        for node in self.nodes:
            known = QUANTITIES.get(node.quantity)
            if known is None:
                raise ValueError(f"unknown quantity {node.quantity!r}")
            if self.utility not in known.utilities:
                raise ValueError(f"{node.quantity!r} is not a quantity of a {self.utility} meter")
            if node.quantity in seen:
                raise ValueError(f"quantity {node.quantity!r} is mapped twice")
            seen.add(node.quantity)
        return self

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(n.quantity for n in self.nodes)

    def node_ids(self, device: str, namespace_index: int) -> dict[str, str]:
        """Quantity → full node id string (``ns=2;s=C1.Power``) for one device."""
        return {
            n.quantity: f"ns={namespace_index};{n.node.replace('{device}', device)}"
            for n in self.nodes
        }


class OpcUaProfileError(ValueError):
    """An OPC UA map is malformed, or a named one does not exist."""


def load_opcua_profiles(directories: Iterable[Path]) -> dict[str, OpcUaProfile]:
    return load_maps(OpcUaProfile, directories, OpcUaProfileError, "OPC UA map")


@functools.cache
def builtin_opcua_profiles() -> Mapping[str, OpcUaProfile]:
    return load_opcua_profiles([MAPS_DIR])


def get_opcua_profile(name: str, extra: Mapping[str, OpcUaProfile] | None = None) -> OpcUaProfile:
    return pick(
        {**builtin_opcua_profiles(), **(extra or {})}, name, OpcUaProfileError, "OPC UA map"
    )
