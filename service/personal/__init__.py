"""Personal data at rest: phone numbers sealed and hashed, their key rotation and re-hashing."""
