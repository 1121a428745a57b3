"""Stringee (Vietnam's CPaaS): request signatures, the REST JWT, SCCO answers, the four webhook
payloads and the recording download. Pure pieces the platform port wires onto the consent gate;
docs/stringee.md says where each fact comes from."""
