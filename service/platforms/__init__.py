"""Telephony platforms: one folder per platform behind one small port."""
