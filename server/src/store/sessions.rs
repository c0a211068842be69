//! Sessions of the web pages: a browser signed in with an account. The cookie holds 256 random
//! bits; the database keeps only their SHA-256, so that a copy of it opens no session. Each
//! session has a CSRF token of its own, which every form it posts must carry.

use base64::Engine as _;

use super::licenses::{random_bytes, sha256};
use super::{Result, Store, now, on_pool};

/// A session found by its cookie: still unexpired, of an active account.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub account: String,
    pub csrf: String,
}

/// 256 random bits, in a form a cookie and a form field carry as they are.
pub(crate) fn random_token() -> Result<String> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

impl Store {
    /// A session for `account` that ends after `ttl` seconds: the cookie's value, the secret
    /// (its CSRF token is the session's, from [`Store::session_get`]). Sessions already over are
    /// removed on the way.
    pub(crate) async fn session_add(&self, account: &str, ttl: i64) -> Result<String> {
        let cookie = random_token()?;
        let csrf = random_token()?;
        let created = now();
        let expires = created.saturating_add(ttl);
        on_pool!(self, write, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
                .bind(created)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO web_sessions (id_hash, account, csrf, created, expires) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&sha256(cookie.as_bytes())[..])
            .bind(account)
            .bind(&csrf)
            .bind(created)
            .bind(expires)
            .execute(pool)
            .await?;
        });
        Ok(cookie)
    }

    /// The session whose cookie is `cookie`, if it has not ended and its account is active.
    pub(crate) async fn session_get(&self, cookie: &str) -> Result<Option<Session>> {
        let row: Option<(String, String)> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT s.account, s.csrf FROM web_sessions s \
                 JOIN accounts a ON a.name = s.account \
                 WHERE s.id_hash = $1 AND s.expires > $2 AND a.active",
            )
            .bind(&sha256(cookie.as_bytes())[..])
            .bind(now())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(account, csrf)| Session { account, csrf }))
    }

    /// Ends the session whose cookie is `cookie` (nothing happens for an unknown one).
    pub(crate) async fn session_remove(&self, cookie: &str) -> Result<()> {
        on_pool!(self, write, pool => {
            sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                .bind(&sha256(cookie.as_bytes())[..])
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
