"""Web plumbing: typed application keys, health, the error mapping, the listener, input parsing."""
