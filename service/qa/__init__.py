"""What QA trainers use: call search, a call's consent history, audited playback, and the /qa
web page. Phone numbers leave this package masked, always."""
