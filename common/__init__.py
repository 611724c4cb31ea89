"""What two or more services share: settings, the message schema, bus wiring, logging."""
