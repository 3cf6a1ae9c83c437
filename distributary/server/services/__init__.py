"""The server's background services: the scheduler (every deployment's runs created ahead of time) and the
late-runs / heartbeat service (Late runs marked, runs of silent workers Crashed). They run on threads of the
server process and only call the run store, whose writes are exactly once: several server processes (or a server
and embedded `serve()` processes or workers) can run them at once on one database."""
from __future__ import annotations

from .loop import Service, start_services

__all__ = ["Service", "start_services"]
