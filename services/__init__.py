"""The three VolumeViz services: watcher, scanner, gateway."""
