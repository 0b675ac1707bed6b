"""The HTTP API: thin handlers over the services; auth, ids and errors as middleware."""
