"""The ``parkwatch`` command: composes the services, the demo and the benchmarks.

It sits above every service (they never import it, nor each other) and imports a service's
module only inside the sub-command that runs it.
"""
