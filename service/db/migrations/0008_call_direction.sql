-- Outbound calls: the data subject is the party who is not the contact centre, whichever way the
-- call goes (the caller on inbound calls, the callee on outbound ones). The gate now stores that
-- party's number in caller_enc/caller_hash in both directions, so every lookup by a person's
-- number (holds, erasure, access, do-not-record, purge, key rotation) finds outbound calls too,
-- and keeps only the contact centre's own number in plain text in `called`.
--
-- Existing rows were all written by a gate that took From as the person and To as the centre,
-- i.e. as inbound calls, so they migrate as 'inbound': their columns already mean what the new
-- comments say. (A call placed outbound before this migration cannot be told apart here: its
-- direction was never stored.)
ALTER TABLE calls ADD COLUMN direction text NOT NULL DEFAULT 'inbound'
    CONSTRAINT calls_direction_check CHECK (direction IN ('inbound', 'outbound'));

COMMENT ON COLUMN calls.direction IS
    'inbound: the person called the contact centre; outbound: the contact centre called them';
COMMENT ON COLUMN calls.caller_enc IS
    'AES-GCM ciphertext of the data subject''s number (the caller on inbound calls, the callee on '
    'outbound ones); never plain';
COMMENT ON COLUMN calls.caller_hash IS
    'HMAC-SHA256 of the data subject''s normalised number, for lookups; NULL once erased';
COMMENT ON COLUMN calls.called IS
    'the contact centre''s own number (To on inbound calls, From on outbound ones); not personal data';
