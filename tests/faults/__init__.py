"""Fault injection on real processes and real files, on SQLite and PostgreSQL.

Each test breaks something the way production breaks it (the OOM killer's ``kill -9``
of one render process or of the whole server, a full or read-only disk) and checks
what the fault does to the tasks: transient faults never fail a task for good.
"""
