"""The FastAPI service: park hierarchy, meter readings and series for boards and clients."""
