"""The scanner service: measures Docker volumes for the gateway (see worker.py, pool.py)."""
