"""The rendered consent notices as the service serves them, and their HTTP route."""
