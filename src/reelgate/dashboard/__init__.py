"""The operator dashboard: server-rendered pages at ``/dashboard`` (docs/dashboard.md).

Pages are Jinja2 templates; their style sheet and one small script are files of this
package (``templates/``, ``static/``), so the dashboard works offline and loads nothing
from another host. Every page calls the services the API uses (``TaskService``,
``CreateService``, ``KeyService``, the event hub); it never repeats their checks.
"""
