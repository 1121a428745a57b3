"""Telephony platforms behind one port: one folder per platform."""
