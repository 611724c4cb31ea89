"""Live sizes on the gateway's side (issue 13): what the scanner's tracker follows, its
figures in the read model, their history points, and its state for /scheduler and health."""
