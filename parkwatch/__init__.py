"""parkwatch: the shared core every service imports (domain model, wire format, storage)."""

__version__ = "0.1.0"
