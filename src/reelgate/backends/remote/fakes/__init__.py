"""Fake upstream providers: ASGI apps that speak a provider's documented API over HTTP.

They are for tests, demos and benchmarks, never for production: state lives in memory,
tasks finish by the clock (no work is done, so thousands in flight cost nothing), and
videos are tiny real MP4 clips (``clips``). Each fake also has a control surface under
``/_fake/`` (faults to inject at run time, counters to read, a reset) and runs by hand
with ``python -m reelgate.backends.remote.fakes.<provider>``.

- ``ark``: BytePlus ModelArk / Volcengine Ark's content-generation tasks (Seedance),
  checked against the official ``byteplussdkarkruntime`` SDK in the tests.
- ``common``: what every fake shares (fault switches, cut downloads, hanging answers).
"""
