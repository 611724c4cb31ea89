from services.scanner.walk_types import WalkFds

walk: WalkFds  # the signature both loops share (walk_types.py)
