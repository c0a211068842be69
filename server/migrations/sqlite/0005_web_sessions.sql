-- Sessions of the web pages (`/account/`): the browser's cookie holds a random id, of which only
-- the SHA-256 is kept; each has its own token that every form it posts must carry (CSRF).
-- An account removed takes its sessions with it; one deactivated keeps them, unusable.
CREATE TABLE web_sessions (
    id_hash BLOB PRIMARY KEY NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires);
CREATE INDEX web_sessions_by_account ON web_sessions (account);

-- The portal lists an account's own downloads.
CREATE INDEX downloads_by_subject ON downloads (subject, seq);
