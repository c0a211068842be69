//! Devices: a machine an account signed in on through the web flow (the authenticator's
//! `Webflow`, RFC 8252 with PKCE), and the one-time codes that flow hands to it.
//!
//! A device credential is `tgd_<id>_<secret>`, made and stored like a license key (the id finds
//! the row, the secret's SHA-256 is kept and compared in constant time); it opens what its
//! account holds, for as long as the account is active and the device is not revoked (its row
//! deleted, which moves the entitlement counter). A code is 256 random bits, kept as SHA-256
//! with the PKCE challenge and the redirect address it was given for; it is taken once, whether
//! the exchange then succeeds or not, and is good for [`CODE_TTL`] seconds.

use serde::Serialize;
use subtle::ConstantTimeEq;

use super::licenses::{new_key, parse_key, sha256};
use super::{BeginWrite, Result, Store, StoreError, now, on_pool, random_token};

const DEVICE_PREFIX: &str = "tgd_";
/// Seconds a code of the web flow may be exchanged in.
const CODE_TTL: i64 = 60;
/// Devices one account may have signed in at once.
pub(crate) const MAX_DEVICES: i64 = 50;
/// The longest name a device may give itself.
pub(crate) const MAX_DEVICE_NAME: usize = 100;

/// A device credential as a client presents it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DeviceKey {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// Parses `tgd_<id>_<secret>`; `None` for anything else.
    pub(crate) fn parse(key: &str) -> Option<DeviceKey> {
        let (id, secret) = parse_key(DEVICE_PREFIX, key)?;
        Some(DeviceKey { id, secret })
    }
}

/// A device signed in with an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Device {
    pub id: String,
    pub account: String,
    pub name: String,
    pub created: i64,
}

/// What a code was given for, once taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TakenCode {
    pub account: String,
    pub device: String,
    pub challenge: String,
    pub redirect_uri: String,
    pub expires: i64,
}

impl Store {
    /// A one-time code for `account` to sign in the device `device` with, to be exchanged
    /// with the verifier of `challenge` and the same `redirect_uri` within [`CODE_TTL`]
    /// seconds. Codes already over are removed on the way.
    pub(crate) async fn device_code_add(
        &self,
        account: &str,
        device: &str,
        challenge: &str,
        redirect_uri: &str,
    ) -> Result<String> {
        let code = random_token()?;
        let at = now();
        on_pool!(self, write, pool => {
            sqlx::query("DELETE FROM sign_in_codes WHERE expires <= $1")
                .bind(at)
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO sign_in_codes (code_hash, account, device, challenge, redirect_uri, \
                 expires) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&sha256(code.as_bytes())[..])
            .bind(account)
            .bind(device)
            .bind(challenge)
            .bind(redirect_uri)
            .bind(at.saturating_add(CODE_TTL))
            .execute(pool)
            .await?;
        });
        Ok(code)
    }

    /// Takes the code: it is gone after this, whatever the caller then finds. `None` for a
    /// code never given or already taken (an expired one is returned; the caller checks).
    pub(crate) async fn device_code_take(&self, code: &str) -> Result<Option<TakenCode>> {
        let row: Option<(String, String, String, String, i64)> = on_pool!(self, write, pool => {
            sqlx::query_as(
                "DELETE FROM sign_in_codes WHERE code_hash = $1 \
                 RETURNING account, device, challenge, redirect_uri, expires",
            )
            .bind(&sha256(code.as_bytes())[..])
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(account, device, challenge, redirect_uri, expires)| TakenCode {
                account,
                device,
                challenge,
                redirect_uri,
                expires,
            },
        ))
    }

    /// Signs a device in for `account`: the device and its credential, shown this once. An
    /// account has at most [`MAX_DEVICES`]: past them, one must be revoked first.
    pub(crate) async fn device_add(&self, account: &str, name: &str) -> Result<(Device, String)> {
        let (id, secret) = new_key()?;
        let created = now();
        on_pool!(self, write, pool => {
            let mut tx = pool.begin_write().await?;
            let (signed_in,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM devices WHERE account = $1")
                    .bind(account)
                    .fetch_one(&mut *tx)
                    .await?;
            if signed_in >= MAX_DEVICES {
                return Err(StoreError::Conflict(format!(
                    "the account {account:?} has {signed_in} devices signed in, the most it may \
                     have: revoke one in the portal first"
                )));
            }
            sqlx::query(
                "INSERT INTO devices (id, account, name, secret_hash, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(account)
            .bind(name)
            .bind(&sha256(secret.as_bytes())[..])
            .bind(created)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        let key = format!("{DEVICE_PREFIX}{id}_{secret}");
        let device = Device {
            id,
            account: account.to_owned(),
            name: name.to_owned(),
            created,
        };
        Ok((device, key))
    }

    /// The account a device credential belongs to, if it is right and not revoked. An unknown
    /// id is compared against a stand-in, to take the same time as a wrong secret.
    pub(crate) async fn device_verify(&self, key: &DeviceKey) -> Result<Option<String>> {
        let row: Option<(Vec<u8>, String)> = on_pool!(self, read, pool => {
            sqlx::query_as("SELECT secret_hash, account FROM devices WHERE id = $1")
                .bind(&key.id)
                .fetch_optional(pool)
                .await?
        });
        let presented = sha256(key.secret.as_bytes());
        let nothing = sha256(b"no such device");
        let stored = row.as_ref().map_or(&nothing[..], |row| &row.0[..]);
        let matches: bool = stored.ct_eq(&presented[..]).into();
        Ok(row.filter(|_| matches).map(|row| row.1))
    }

    /// The devices signed in with `account`, newest first.
    pub(crate) async fn devices_of(&self, account: &str) -> Result<Vec<Device>> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, read, pool => {
            sqlx::query_as(
                "SELECT id, name, created FROM devices WHERE account = $1 \
                 ORDER BY created DESC, id",
            )
            .bind(account)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, created)| Device {
                id,
                account: account.to_owned(),
                name,
                created,
            })
            .collect())
    }

    /// Revokes `account`'s device `id`: whether there was one.
    pub(crate) async fn device_remove(&self, account: &str, id: &str) -> Result<bool> {
        let done = on_pool!(self, change, pool => {
            sqlx::query("DELETE FROM devices WHERE id = $1 AND account = $2")
                .bind(id)
                .bind(account)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }
}
