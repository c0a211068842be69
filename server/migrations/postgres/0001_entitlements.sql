-- The entitlement service's schema, PostgreSQL form. The SQLite form in ../sqlite has the same
-- tables and columns; times are seconds since the epoch in both.

CREATE TABLE products (
    slug TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE product_refs (
    product TEXT NOT NULL REFERENCES products (slug) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    PRIMARY KEY (product, pattern)
);

-- A license key is tg_<id>_<secret>: the id is public and indexed, the secret is stored only as
-- its SHA-256.
CREATE TABLE licenses (
    id TEXT PRIMARY KEY NOT NULL,
    key_hash BYTEA NOT NULL,
    active BOOLEAN NOT NULL,
    expires BIGINT,
    note TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE license_products (
    license TEXT NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    product TEXT NOT NULL REFERENCES products (slug),
    PRIMARY KEY (license, product)
);

CREATE TABLE accounts (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE account_products (
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    product TEXT NOT NULL REFERENCES products (slug),
    PRIMARY KEY (account, product)
);

-- Every token issued: to whom, for what, from where.
CREATE TABLE issued_tokens (
    seq BIGSERIAL PRIMARY KEY,
    jti TEXT NOT NULL,
    subject TEXT NOT NULL,
    license TEXT,
    account TEXT,
    repo TEXT NOT NULL,
    refs TEXT NOT NULL,
    client TEXT NOT NULL,
    issued BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX issued_tokens_by_license ON issued_tokens (license, issued);
CREATE INDEX issued_tokens_by_time ON issued_tokens (issued);

-- Every gated commit or delta superblock served.
CREATE TABLE downloads (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    repo TEXT NOT NULL,
    ref_name TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    token_id TEXT,
    subject TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX downloads_by_time ON downloads (at);
CREATE INDEX downloads_by_ref ON downloads (ref_name, at);

-- The public halves of the signing keys, so that every instance publishes and trusts them; a
-- retired key still verifies until every token it signed has expired.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    public_key BYTEA NOT NULL,
    created BIGINT NOT NULL,
    retired BIGINT
);
