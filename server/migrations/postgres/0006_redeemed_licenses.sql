-- A license redeemed into an account (in the web pages): while it is active and unexpired, its
-- products are the account's too. A license is redeemed once; removing the account frees it.
ALTER TABLE licenses ADD COLUMN account TEXT REFERENCES accounts (name) ON DELETE SET NULL;
CREATE INDEX licenses_by_account ON licenses (account);
