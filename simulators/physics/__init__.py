"""The physical sub-models of a simulated park, each a few numpy functions over ``[time, meter]``
arrays: deterministic noise, sun and weather, production activity, electricity (PV, battery,
power factor), the water network's storage tank, compressed air, the steam boiler, and hot and
cooling water. They know nothing of parks or faults: :mod:`simulators.layout` sizes them and
:class:`simulators.model.ParkModel` wires them together."""
