"""Workers: claim tasks with leases, render them, store the output, finish."""
