"""Reading a detector's block: the tables' accumulators straight into the shared block's
arrays (what ``Table.block`` gives), one pass per table."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled


@_compiled
def gather_block(
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    last_v: npt.NDArray[np.float64],
    counter_rows: npt.NDArray[np.bool_],
    src: npt.NDArray[np.intp],
    dst: npt.NDArray[np.intp],
    values: npt.NDArray[np.float64],
    out_count: npt.NDArray[np.int32],
    out_low: npt.NDArray[np.float64],
    out_high: npt.NDArray[np.float64],
) -> None:
    """Rows ``src`` of a table's slot accumulators (rows × the block's slots) read as a
    block's rows ``dst``: the mean of an instant quantity's readings or a counter's last,
    their count and extremes, NaN where no reading came (``SlotArrays.block``). The outputs
    are ``[slot, row]`` (slot-major, as the tables are): slot by slot, a table's rows are
    read and written in runs of adjacent cells, not transposed."""
    slots = total.shape[1]
    for k in range(slots):
        for j in range(src.size):
            s = src[j]
            d = dst[j]
            n = count[s, k]
            out_count[k, d] = n
            if n == 0:
                values[k, d] = np.nan
                out_low[k, d] = np.nan
                out_high[k, d] = np.nan
            else:
                values[k, d] = last_v[s, k] if counter_rows[s] else total[s, k] / n
                out_low[k, d] = low[s, k]
                out_high[k, d] = high[s, k]
