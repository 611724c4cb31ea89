"""The WebSocket: the endpoint, the fan-out hub, the compression choice."""
