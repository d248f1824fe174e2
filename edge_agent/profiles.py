"""Meter profiles: the register maps of meter products, kept as data (``register_maps/*.yaml``).

A profile says, for each quantity a meter model offers, where it lives (function code and
address), how it is encoded (data type, word order) and how the raw number becomes a
parkwatch quantity: ``value = raw × scale × installation ratio``. The edge agent's drivers
decode with it and the simulated meters encode with it, so both sides share one definition.

Addressing: every ``address`` in a map is the 0-based address that goes into the Modbus PDU.
Vendor manuals number registers differently (Eastron "30001" = input register 0; Schneider
"register 3060" = address 3059): each map's ``source`` and each register's ``doc`` give the
manual's number so a map can be checked against the manual line by line.

Word order: ``big`` is high word first (ABCD for 32 bits, the Modbus norm), ``little`` is low
word first (CDAB; for 64 bits all four words reversed). Bytes within a word are always big
endian; byte-swapped layouts (BADC) are not supported because pymodbus' converters do not do
them and no map here needs them.

Conversion uses pymodbus' own ``convert_from_registers``/``convert_to_registers`` helpers, so
the word-order handling is the library's, not hand-rolled struct packing.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.client.mixin import ModbusClientMixin

from edge_agent.yaml_maps import load_map, load_maps, pick
from parkwatch.quantities import QUANTITIES, Utility
from parkwatch.slugs import Slug

MAPS_DIR = Path(__file__).resolve().parent / "register_maps"
MAX_READ_COUNT = 125  # the Modbus limit for one read of holding or input registers

_PM = ModbusClientMixin.DATATYPE


class ProfileError(ValueError):
    """A register map is malformed, or a named profile does not exist."""


class Function(StrEnum):
    HOLDING = "holding"  # read with function code 3
    INPUT = "input"  # read with function code 4

    @property
    def code(self) -> int:
        return 3 if self is Function.HOLDING else 4


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def words(self) -> int:
        return int(_PYMODBUS_TYPE[self].value[1])

    @property
    def is_float(self) -> bool:
        return self in (DataType.FLOAT32, DataType.FLOAT64)

    @property
    def int_range(self) -> tuple[int, int]:
        bits = 16 * self.words
        if self.value.startswith("u"):
            return 0, 2**bits - 1
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


_PYMODBUS_TYPE = {
    DataType.INT16: _PM.INT16,
    DataType.UINT16: _PM.UINT16,
    DataType.INT32: _PM.INT32,
    DataType.UINT32: _PM.UINT32,
    DataType.INT64: _PM.INT64,
    DataType.UINT64: _PM.UINT64,
    DataType.FLOAT32: _PM.FLOAT32,
    DataType.FLOAT64: _PM.FLOAT64,
}


class WordOrder(StrEnum):
    BIG = "big"  # ABCD: high word first
    LITTLE = "little"  # CDAB: low word first


class Ratio(StrEnum):
    """Which installation ratio multiplies a register: meters behind instrument transformers
    report secondary-side values (a 5 A current transformer's secondary, a PT's 100 V)."""

    NONE = "none"
    CT = "ct"  # current
    PT = "pt"  # voltage
    PTCT = "ptct"  # power and energy


@dataclass(frozen=True, slots=True)
class Ratios:
    """A device's instrument-transformer ratios (primary / secondary), from ``gateway.yaml``."""

    ct: float = 1.0
    pt: float = 1.0

    def factor(self, ratio: Ratio) -> float:
        if ratio is Ratio.CT:
            return self.ct
        if ratio is Ratio.PT:
            return self.pt
        if ratio is Ratio.PTCT:
            return self.ct * self.pt
        return 1.0


NO_RATIOS = Ratios()  # a meter that reports primary-side values


class Transform(StrEnum):
    """A vendor encoding applied to the raw number before scaling."""

    NONE = "none"
    # Schneider's four-quadrant power factor (PM5xxx, iEM3xxx "4Q FP PF"): the register holds
    # -2..2 with the quadrant folded in; above 1 the power factor is 2 - x, below -1 it is
    # -2 - x, in between it is x
    PF_4Q = "pf_4q"

    def apply(self, raw: float) -> float:
        if self is Transform.PF_4Q:
            if raw > 1:
                return 2 - raw
            if raw < -1:
                return -2 - raw
        return raw


_STRICT = ConfigDict(extra="forbid", frozen=True)


class RegisterSpec(BaseModel):
    """Where one quantity lives on the meter and how to turn its words into a value."""

    model_config = _STRICT

    quantity: str
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType
    scale: Annotated[float, Field(gt=0)] = 1.0
    ratio: Ratio = Ratio.NONE
    # default: the profile's (filled in when the profile is validated)
    function: Function = Function.HOLDING
    word_order: WordOrder = WordOrder.BIG
    transform: Transform = Transform.NONE
    doc: str = ""  # the manual's register number and name

    @property
    def words(self) -> int:
        return self.type.words

    @property
    def end(self) -> int:
        """One past the last register this value occupies."""
        return self.address + self.words

    @property
    def order(self) -> Literal["big", "little"]:
        return "little" if self.word_order is WordOrder.LITTLE else "big"

    def decode(self, words: Sequence[int], ratios: Ratios = NO_RATIOS) -> float:
        raw = ModbusClientMixin.convert_from_registers(
            list(words), _PYMODBUS_TYPE[self.type], word_order=self.order
        )
        assert isinstance(raw, int | float)
        if not math.isfinite(raw):
            return float(raw)
        if self.transform is not Transform.NONE:
            raw = self.transform.apply(float(raw))
        # Scale in decimal, from the shortest text that reads back as the register's value:
        # a float32 6679.406 stays 6679.406 (not 6679.40576171875) and 935723969 × 0.001 is
        # 935723.969, not 935723.9690000001. Nothing is rounded beyond the register's precision.
        if self.type is DataType.FLOAT32:
            text = np.format_float_positional(np.float32(raw), unique=True, trim="-")
        else:
            text = repr(raw)
        return float(Decimal(text) * _exact(self.scale) * _exact(ratios.factor(self.ratio)))

    def encode(self, value: float, ratios: Ratios = NO_RATIOS) -> list[int]:
        """The words a meter holds for ``value``; integers round to the register's step and
        saturate at the type's range (as a meter's fixed-point register would)."""
        raw = value / (self.scale * ratios.factor(self.ratio))
        if self.type.is_float:
            return ModbusClientMixin.convert_to_registers(
                float(raw), _PYMODBUS_TYPE[self.type], word_order=self.order
            )
        low, high = self.type.int_range
        as_int = 0 if not math.isfinite(raw) else min(max(round(raw), low), high)
        return ModbusClientMixin.convert_to_registers(
            as_int, _PYMODBUS_TYPE[self.type], word_order=self.order
        )

    def resolution(self, ratios: Ratios = NO_RATIOS) -> float:
        """The step of the decoded value for integer registers (0 for floats)."""
        return 0.0 if self.type.is_float else self.scale * ratios.factor(self.ratio)

    def modulus(self, ratios: Ratios = NO_RATIOS) -> float | None:
        """Where an unsigned integer register wraps to zero, in quantity units; ``None`` for
        floats and signed types (a float counter has no fixed wrap)."""
        if self.type.is_float or not self.type.value.startswith("u"):
            return None
        return float(2 ** (16 * self.words) * self.scale * ratios.factor(self.ratio))


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers from ``address`` with one function code."""

    function: Function
    address: int
    count: int
    registers: tuple[RegisterSpec, ...]

    def decode(self, words: Sequence[int], ratios: Ratios = NO_RATIOS) -> dict[str, float]:
        """Decode a response; non-finite values (a float register's NaN, the usual "not
        available" marker) are left out, never passed on."""
        if len(words) != self.count:
            raise ValueError(f"expected {self.count} registers, got {len(words)}")
        found: dict[str, list[float]] = {}
        for spec in self.registers:
            offset = spec.address - self.address
            value = spec.decode(words[offset : offset + spec.words], ratios)
            if math.isfinite(value):
                found.setdefault(spec.quantity, []).append(value)
        # a quantity mapped several times (the phases of a meter without an average
        # register) is their mean
        return {q: vs[0] if len(vs) == 1 else _mean(vs) for q, vs in found.items()}

    def encode(
        self, values: Mapping[str, float], ratios: Ratios = NO_RATIOS
    ) -> tuple[list[int], list[str]]:
        """The block's words for ``values`` (a simulated meter's side), and the quantities
        that had no value: floats then read NaN ("not available"), integers 0."""
        words = [0] * self.count
        missing: list[str] = []
        for spec in self.registers:
            value = values.get(spec.quantity)
            if value is None:
                missing.append(spec.quantity)
                value = math.nan
            offset = spec.address - self.address
            words[offset : offset + spec.words] = spec.encode(value, ratios)
        return words, missing


class MeterProfile(BaseModel):
    """A meter product's register map."""

    model_config = _STRICT

    protocol: Literal["modbus"] = "modbus"
    name: Slug
    vendor: str
    model: str
    utility: Utility
    function: Function  # default for registers that do not say
    word_order: WordOrder  # default for registers that do not say
    # registers a single request may read through between two mapped values: only where the
    # device answers for them (a real SDM630 does; many meters answer exception 2 instead)
    max_gap: Annotated[int, Field(ge=0, le=MAX_READ_COUNT)] = 0
    max_count: Annotated[int, Field(ge=1, le=MAX_READ_COUNT)] = MAX_READ_COUNT
    source: str = ""  # where the map comes from, and how far it can be trusted
    source_version: str = ""  # the cited document's version or date, as printed on it
    illustrative: bool = False  # a layout of our own, not from a product manual
    registers: tuple[RegisterSpec, ...]

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # a register without its own function / word order takes the profile's
        if isinstance(data, dict) and isinstance(data.get("registers"), list):
            defaults = {k: data[k] for k in ("function", "word_order") if k in data}
            data = {
                **data,
                "registers": [
                    {**defaults, **r} if isinstance(r, dict) else r for r in data["registers"]
                ],
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        filled = self.registers
        if not filled:
            raise ValueError("a profile maps at least one register")
        seen: set[str] = set()
        for spec in filled:
            known = QUANTITIES.get(spec.quantity)
            if known is None:
                raise ValueError(f"unknown quantity {spec.quantity!r}")
            if self.utility not in known.utilities:
                raise ValueError(f"{spec.quantity!r} is not a quantity of a {self.utility} meter")
            if spec.quantity in seen and known.is_counter:
                raise ValueError(f"counter {spec.quantity!r} is mapped twice")
            seen.add(spec.quantity)
            if spec.end > 65536:
                raise ValueError(f"{spec.quantity!r} runs past register 65535")
            if spec.words > self.max_count:
                raise ValueError(f"{spec.quantity!r} needs more than max_count registers")
        for function in Function:
            specs = sorted((s for s in filled if s.function is function), key=lambda s: s.address)
            for before, after in itertools.pairwise(specs):
                if after.address < before.end:
                    raise ValueError(
                        f"{before.quantity!r} and {after.quantity!r} overlap at "
                        f"{function} register {after.address}"
                    )
        # the registers averaged into one quantity must come in one answer: one moment
        for quantity in seen:
            blocks = [b for b in self.read_plan if any(r.quantity == quantity for r in b.registers)]
            if len(blocks) > 1:
                raise ValueError(
                    f"{quantity!r} is mapped several times (averaged) but not within one "
                    "request: raise max_gap, or map one register"
                )
        return self

    @functools.cached_property
    def read_plan(self) -> tuple[ReadBlock, ...]:
        """The fewest requests that read every mapped register: contiguous registers (and
        gaps up to ``max_gap``) of one function code share a request of ≤ ``max_count``."""
        blocks: list[ReadBlock] = []
        for function in Function:
            specs = sorted(
                (s for s in self.registers if s.function is function), key=lambda s: s.address
            )
            group: list[RegisterSpec] = []
            for spec in specs:
                if group and (
                    spec.address - group[-1].end > self.max_gap
                    or spec.end - group[0].address > self.max_count
                ):
                    blocks.append(_block(function, group))
                    group = []
                group.append(spec)
            if group:
                blocks.append(_block(function, group))
        return tuple(blocks)

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(spec.quantity for spec in self.registers))

    def counter_moduli(self, ratios: Ratios = NO_RATIOS) -> dict[str, float]:
        """Counter quantity → the value at which its register rolls over to zero."""
        out: dict[str, float] = {}
        for spec in self.registers:
            modulus = spec.modulus(ratios)
            if modulus is not None and QUANTITIES[spec.quantity].is_counter:
                out[spec.quantity] = modulus
        return out

    def register(self, quantity: str) -> RegisterSpec:
        for spec in self.registers:
            if spec.quantity == quantity:
                return spec
        raise KeyError(quantity)


def _mean(values: Sequence[float]) -> float:
    return float(sum(Decimal(repr(v)) for v in values) / len(values))


def _exact(factor: float) -> Decimal:
    return Decimal(repr(factor))


def _block(function: Function, group: Sequence[RegisterSpec]) -> ReadBlock:
    start = group[0].address
    return ReadBlock(function, start, group[-1].end - start, tuple(group))


# --- loading ---------------------------------------------------------------------------


def load_profile(path: Path) -> MeterProfile:
    return load_map(MeterProfile, path, ProfileError, "register map")


def load_profiles(directories: Iterable[Path]) -> dict[str, MeterProfile]:
    """Every ``*.yaml`` map in ``directories``; a later directory may replace a profile."""
    return load_maps(MeterProfile, directories, ProfileError, "register map")


@functools.cache
def builtin_profiles() -> Mapping[str, MeterProfile]:
    """The maps shipped in ``edge_agent/register_maps`` (loaded on first use)."""
    return load_profiles([MAPS_DIR])


def get_profile(name: str, extra: Mapping[str, MeterProfile] | None = None) -> MeterProfile:
    return pick({**builtin_profiles(), **(extra or {})}, name, ProfileError, "meter profile")
