"""reelgate's benchmarks: each hot path against a ceiling measured in the same run.

Every benchmark is a module runnable on its own (``python -m bench.retrieve --quick``)
that writes its rows as JSON; ``bench/run`` (``python -m bench.runner``) runs them all
and writes ``bench/RESULTS.md``. Servers run as subprocesses and load comes from
``wrk`` in another process, so that the process measured is only the server.

| module | benchmarks |
|---|---|
| ``retrieve`` | #1 retrieve vs. the baseline route; #2 the same while videos render |
| ``create`` | #3 multipart creates vs. the baseline route |
| ``dispatch`` | #4 create → IN_PROGRESS with the instant renderer |
| ``throughput`` | #5 end-to-end tasks/s vs. the store's own rate (SQLite, PostgreSQL) |
| ``render`` | #6 the preview renderer vs. encoding ready-made frames |
| ``memory`` | #7 server RSS with 100,000 tasks vs. an empty store |
| ``scaleout`` | #8 end-to-end tasks/s with 1, 2 and 4 worker processes vs. 1 (PostgreSQL) |
| ``upstream`` | #9 10,000 tasks polled at a fake Ark vs. a naive poller (PostgreSQL) |
| ``readpath`` | #10 retrieve vs. a bare ASGI app (``bare``), with 1 and 2 API processes |
| ``listing`` | #11 a first and a deep page of ``GET /v1/videos``, 1,000,000 tasks, vs. retrieve |
| ``events`` | #12 1,000 open SSE streams: memory per stream, delay from a change vs. polling |
| ``webhooks`` | #13 webhook deliveries/s from the outbox vs. a plain httpx loop (the ceiling) |

Helpers: ``bare`` (the bare ASGI ceiling), ``servers`` (subprocess servers, keys,
throwaway PostgreSQL databases),
``seed`` (fast store seeding), ``load`` (wrk, its Lua scripts and its output),
``pyload`` (the Python fallback load generator), ``forms`` (the create request),
``options`` (the shared command line) and ``report`` (rows, the machine, RESULTS.md).
"""
