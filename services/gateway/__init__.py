"""The gateway: HTTP and WebSocket (Quart on Hypercorn), the read model, scan jobs, storage."""
