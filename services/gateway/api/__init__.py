"""The REST routes and their request and response models."""
