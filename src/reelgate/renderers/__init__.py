"""Renderers: the adapters behind the ``Renderer`` port that make one MP4 per task.

``preview`` is the built-in CPU renderer (real H.264 files made offline, the sandbox
default); ``frames`` draws its pictures; ``processes`` runs renders in child processes
that fail alone and never outlive their parent.

Faults a renderer reports, and what the worker does with them:

- ``RenderRejected``: the input is refused; the task ends FAILED.
- ``RenderError`` with code ``RENDER_CRASHED``: the process that rendered died (the
  OOM killer, ``kill -9``); a transient fault charged to this task only: it goes back
  to the queue with backoff, and ends ERROR only once its attempts are spent.
- ``Unavailable``: the output could not be written (a full disk, a folder that is not
  writable); a transient fault of the machine, not of the task: it goes back to the
  queue with backoff, without counting as an attempt.
- any other ``RenderError``: the task ends ERROR at once.
"""

RENDER_CRASHED = "render_crashed"
