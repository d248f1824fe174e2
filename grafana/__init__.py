"""Grafana for parkwatch: provisioning files and dashboards generated from code.

Not part of the installed distribution: run ``python -m grafana.dashboards`` from the repository
root.
"""
