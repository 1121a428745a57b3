"""``callvault demo``: the whole life of a recording on a laptop, with a platform stand-in."""
