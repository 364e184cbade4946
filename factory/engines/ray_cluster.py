"""Joining (or starting) the Ray cluster that a build's steps run on."""

from __future__ import annotations

import logging
from typing import Any

from factory.errors import require

log = logging.getLogger(__name__)
_dashboard: list[str] = []  # the dashboard address of the cluster this process joined, once known


def connect(address: str | None) -> Any:
    """The `ray` module, connected to the cluster at `address` (None: start one on this machine).

    A process that already called `ray.init` (a test, a notebook) keeps its cluster. Ray Data's
    progress bars are off: the build has its own, and theirs would garble it."""
    ray = require("ray", "ray")
    if not ray.is_initialized():
        context = ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        if getattr(context, "dashboard_url", None):
            _dashboard[:] = [f"http://{context.dashboard_url}"]
            log.info("ray: dashboard at %s", _dashboard[0])
    require("ray.data", "ray").DataContext.get_current().enable_progress_bars = False
    return ray


def dashboard_url() -> str | None:
    """The Ray dashboard's address, when this process started or joined a cluster that has one."""
    return _dashboard[0] if _dashboard else None
