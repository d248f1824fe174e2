"""Analytics: streaming windows over readings, demand, energy accounting and detectors."""
