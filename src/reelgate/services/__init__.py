"""Use cases over the ports: tasks, keys, signed links."""
