"""The read model: volumes from the watcher merged with stored results, and listings of it."""
