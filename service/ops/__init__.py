"""Process plumbing: temporary work folders and the crash points of the fault tests."""
