"""Renderers: the adapters behind the ``Renderer`` port that make one MP4 per task.

``preview`` is the built-in CPU renderer (real H.264 files made offline, the sandbox
default); ``frames`` draws its pictures.
"""
