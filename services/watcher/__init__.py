"""The watcher: follows the Docker engine and publishes the volume set (Clone pattern server)."""
