-- How a data-subject request came in (issue 16): by phone, email, letter, in person or on the
-- web. Kept beside the request because the answer is owed the same way and an inspector asks
-- how requests arrive. Requests from before this migration stay NULL: nobody recorded it, and
-- a guessed channel would be a false record.
ALTER TABLE dsar_requests ADD COLUMN channel text
    CHECK (channel IN ('phone', 'email', 'letter', 'in_person', 'web'));
