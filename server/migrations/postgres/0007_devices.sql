-- Devices signed in through the web flow (the authenticator's Webflow): each holds a credential
-- `tgd_<id>_<secret>` of which only the secret's SHA-256 is kept, and opens what its account
-- holds until it is revoked (its row deleted) in the portal. An account removed takes its
-- devices with it. A revocation moves the entitlement counter, so nothing remembered outlives it.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX devices_by_account ON devices (account);
CREATE TRIGGER devices_changed AFTER DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_entitlements_changed();

-- The web flow's one-time codes (RFC 6749's authorization codes, with RFC 7636's challenge),
-- kept as SHA-256, each for one redirect address, taken once, good for a minute.
CREATE TABLE sign_in_codes (
    code_hash BYTEA PRIMARY KEY NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    device TEXT NOT NULL,
    challenge TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX sign_in_codes_by_expiry ON sign_in_codes (expires);
