"""callvault: the recording consent gate, its ledger and the service around them."""
