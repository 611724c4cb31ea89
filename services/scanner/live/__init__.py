"""Live sizes (issue 13): the change tracker, the volumes it keeps exact, and the process
that follows them and reports their figures to the gateway."""
