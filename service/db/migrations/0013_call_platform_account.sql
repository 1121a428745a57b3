-- Which platform account a call came through (Twilio: the AccountSid of the (sub)account that
-- sent its webhooks), so that its recording is fetched, listed and deleted with that account's
-- credentials, not the deployment's own account's (issue 13: a BPO gives each client a
-- subaccount). NULL: the deployment's configured account (CALLVAULT_TWILIO_ACCOUNT_SID), which
-- serves the tenant `default`; that account lives in the environment, not here, so calls of the
-- tenant `default` keep NULL.
ALTER TABLE calls
    ALTER COLUMN platform SET DEFAULT 'twilio',
    ADD COLUMN platform_account text CHECK (platform_account <> '');
COMMENT ON COLUMN calls.platform_account IS
    'the platform account the call came through (Twilio AccountSid); NULL: the configured account of the tenant default';

-- Backfill where the account is known: a tenant other than `default` with exactly one account
-- on the call's platform took every one of its calls through it.
UPDATE calls AS c
SET platform_account = only_one.account_id
FROM (
    SELECT tenant_id, platform, min(account_id) AS account_id
    FROM tenant_accounts
    GROUP BY tenant_id, platform
    HAVING count(*) = 1
) AS only_one
WHERE c.platform_account IS NULL
  AND c.tenant_id <> 'default'
  AND c.tenant_id = only_one.tenant_id
  AND c.platform = only_one.platform;
