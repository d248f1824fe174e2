"""Compiled loops (numba) for the few per-reading recursions of the hot path.

Everything else in the engine and the detectors is vectorised numpy. These are the parts
that are a recursion along each row's slots (run lengths, a sliding window, merging a reading
into its cell), which numpy can only express as a couple of dozen full-array passes per
reading; compiled, each is one pass. Each kernel does exactly the arithmetic of the numpy
code it replaced, in the same order (no fast-math), so the findings are the same to the bit.
Compiled once and cached on disk (``cache=True``), in a folder keyed by all their sources
(``common.CACHE_DIR``).

One module per stage that uses them: ``feeding`` and ``clocks`` (the engine's feed and
its clock), ``block`` (a scope's shared block), ``meter_faults``, ``baseline``, ``peaks``
(their detectors; the leaks use ``meter_faults.stuck_runs``); ``common`` holds the
decorator and the scalar helpers they share. ``clocks.feed_clocks`` also routes replay's rows
with ``feeding``'s routing helpers (compiled into it: hence the keyed cache, see ``common``).
"""
