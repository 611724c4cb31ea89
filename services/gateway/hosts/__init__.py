"""Many hosts, one gateway (issue 16): the agents' state, host by host."""
