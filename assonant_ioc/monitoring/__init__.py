"""How each service is watched: ``/metrics`` and ``/health`` over HTTP, the loop watch that
says a service is stuck on one item, the Prometheus counters every service makes alike."""
