"""Twilio: signed webhooks in (``routes``), TwiML out (``twiml``), signatures (``signature``)."""
