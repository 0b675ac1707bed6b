"""Every router of the dashboard, for the application to include (not in /openapi.json)."""

from __future__ import annotations

from reelgate.dashboard import admin, signin, tasks, usage

ROUTERS = (signin.router, tasks.router, usage.router, admin.router)
