"""The task model, its status machine, the model catalog and the error tree.

Nothing in this package does I/O.
"""
