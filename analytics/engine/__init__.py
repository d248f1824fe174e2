"""The streaming engine: window store, clocks, the detector contract, events."""
