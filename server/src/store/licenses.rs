//! Licenses (a random key, shown once, stored as a hash) and accounts (a name and an
//! Argon2id-hashed password), each holding products.
//!
//! A license key is `tg_<id>_<secret>`. The id is public: it finds the row with one indexed
//! query. The secret is 256 random bits, stored as SHA-256 (a slow hash adds nothing to a secret
//! that cannot be guessed) and compared in constant time. When the id is unknown, the secret is
//! still hashed and compared against a stand-in, so that neither the answer nor its timing tells
//! a wrong secret from an unknown id.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::{BeginWrite, Result, Store, StoreError, insert_rows, now, on_pool};

const KEY_PREFIX: &str = "tg_";
const ID_LEN: usize = 10;
/// Lowercase RFC 4648 base32: easy to read aloud, no `_` (the separator).
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct License {
    pub id: String,
    pub products: Vec<String>,
    pub active: bool,
    /// Seconds since the epoch; `None` for never.
    pub expires: Option<i64>,
    pub note: String,
    pub created: i64,
    /// The account it was redeemed into (in the web pages), if any.
    pub account: Option<String>,
}

/// What a new license holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewLicense {
    pub products: Vec<String>,
    pub expires: Option<i64>,
    pub note: String,
    /// The account it is redeemed into from the start (a shop selling to a signed-in
    /// customer), if any.
    pub account: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Account {
    pub name: String,
    pub products: Vec<String>,
    pub active: bool,
    pub created: i64,
}

/// A license key as a client presents it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LicenseKey {
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LicenseKey {
    /// Parses `tg_<id>_<secret>`; `None` for anything else, without saying why.
    pub(crate) fn parse(key: &str) -> Option<LicenseKey> {
        let (id, secret) = parse_key(KEY_PREFIX, key)?;
        Some(LicenseKey { id, secret })
    }

    fn hash(&self) -> [u8; 32] {
        sha256(self.secret.as_bytes())
    }
}

/// The id and secret of `<prefix><id>_<secret>`, a key of the form [`new_key`] makes.
pub(super) fn parse_key(prefix: &str, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(prefix)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b));
    let secret_ok = (32..=128).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (id_ok && secret_ok).then(|| (id.to_owned(), secret.to_owned()))
}

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub(super) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| StoreError::Invalid("no randomness".to_owned()))?;
    Ok(bytes)
}

/// A new key: a 10-character base32 id (50 bits, unique per license) and a 256-bit secret.
pub(super) fn new_key() -> Result<(String, String)> {
    let id_bytes = random_bytes::<ID_LEN>()?;
    let id: String = id_bytes
        .iter()
        .map(|b| ID_ALPHABET[usize::from(*b) % 32] as char)
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(random_bytes::<32>()?)
        .replace('_', "-");
    Ok((id, secret))
}

/// The first second of the year 10000: expiry times stay below it, where RFC 3339 ends.
const YEAR_10000: i64 = 253_402_300_800;

fn check_expires(expires: Option<i64>) -> Result<()> {
    match expires {
        Some(e) if !(1..YEAR_10000).contains(&e) => Err(StoreError::Invalid(format!(
            "{e} is not an expiry time: give one between 1970 and the year 9999"
        ))),
        _ => Ok(()),
    }
}

fn check_note(note: &str) -> Result<()> {
    if note.len() > 2000 || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(StoreError::Invalid(
            "a note is at most 2000 characters, without control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Account names are what people type at a prompt: 1 to 64 printable characters without
/// spaces or `:` (which the Basic scheme uses as its separator).
/// Whether `name` could be an account's name (1 to 64 characters, no spaces, control characters
/// or ':').
pub(crate) fn is_account_name(name: &str) -> bool {
    check_account_name(name).is_ok()
}

fn check_account_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != ':');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{name:?} is not an account name (1 to 64 characters, no spaces or ':')"
        )))
    }
}

fn check_password(password: &str) -> Result<()> {
    if password.len() < 8 || password.len() > 1024 {
        return Err(StoreError::Invalid(
            "a password is 8 to 1024 bytes long".to_owned(),
        ));
    }
    Ok(())
}

/// A password hash to verify against when the account does not exist, so that an unknown name
/// costs what a wrong password costs.
fn stand_in_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let password: String = random_bytes::<16>().map(hex::encode).unwrap_or_default();
        hash_password(&password).unwrap_or_default()
    })
}

/// Argon2id with the crate's recommended parameters and a random salt, in PHC string form.
fn hash_password(password: &str) -> Result<String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("hashing the password: {e}")))
}

fn verify_password(hash: &str, password: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Runs password hashing on the blocking pool, a few at a time: one Argon2 hash takes about
/// 19 MiB and tens of milliseconds, and a flood of logins must take neither all the memory nor
/// every blocking thread (which serve files too). The others wait their turn.
async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let _slot = slots.acquire().await.map_err(StoreError::HashingTurn)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(StoreError::Hashing)
}

/// (owner, product) rows.
type Pairs = Vec<(String, String)>;

/// The products of each row, from (owner, product) pairs sorted by owner.
/// A license as listed: id, active, expires, note, created, account.
type ListedLicense = (String, bool, Option<i64>, String, i64, Option<String>);

/// Licenses from their rows and the (license, product) pairs.
fn licenses_of(rows: Vec<ListedLicense>, pairs: &[(String, String)]) -> Vec<License> {
    rows.into_iter()
        .map(|(id, active, expires, note, created, account)| License {
            products: products_of(&id, pairs),
            id,
            active,
            expires,
            note,
            created,
            account,
        })
        .collect()
}

fn products_of(owner: &str, pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(o, _)| o == owner)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Products as a holder keeps them: sorted, each once.
fn product_set(products: &[String]) -> Vec<String> {
    let mut products = products.to_vec();
    products.sort();
    products.dedup();
    products
}

impl Store {
    /// Creates a license; returns it with its key, which is never stored or shown again.
    pub(crate) async fn license_add(&self, new: &NewLicense) -> Result<(License, String)> {
        check_note(&new.note)?;
        check_expires(new.expires)?;
        self.products_exist(&new.products).await?;
        if let Some(account) = &new.account
            && self.account_row(account).await?.is_none()
        {
            return Err(StoreError::NotFound(format!("account {account:?}")));
        }
        let products = product_set(&new.products);
        let (id, secret) = new_key()?;
        let key = format!("{KEY_PREFIX}{id}_{secret}");
        let hash = sha256(secret.as_bytes()).to_vec();
        let created = now();
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO licenses (id, key_hash, active, expires, note, created, account) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(&hash)
            .bind(true)
            .bind(new.expires)
            .bind(&new.note)
            .bind(created)
            .bind(&new.account)
            .execute(&mut *tx)
            .await?;
            insert_rows!(
                tx,
                "INSERT INTO license_products (license, product) VALUES ($1, $2)",
                &id,
                &products
            );
            tx.commit().await?;
        });
        let license = License {
            id,
            products,
            active: true,
            expires: new.expires,
            note: new.note.clone(),
            created,
            account: new.account.clone(),
        };
        Ok((license, key))
    }

    pub(crate) async fn license_list(&self) -> Result<Vec<License>> {
        let (rows, pairs): (Vec<ListedLicense>, Vec<(String, String)>) = on_pool!(self, read, pool => {
            let rows = sqlx::query_as(
                "SELECT id, active, expires, note, created, account FROM licenses \
                 ORDER BY created, id",
            )
            .fetch_all(pool)
            .await?;
            let pairs = sqlx::query_as(
                "SELECT license, product FROM license_products ORDER BY license, product",
            )
            .fetch_all(pool)
            .await?;
            (rows, pairs)
        });
        Ok(licenses_of(rows, &pairs))
    }

    pub(crate) async fn license_get(&self, id: &str) -> Result<License> {
        self.license_row(id)
            .await?
            .map(|(_, l)| l)
            .ok_or_else(|| not_found_license(id))
    }

    pub(super) async fn license_row(&self, id: &str) -> Result<Option<(Vec<u8>, License)>> {
        type Row = (Vec<u8>, bool, Option<i64>, String, i64, Option<String>);
        let (row, products): (Option<Row>, Vec<(String,)>) = on_pool!(self, read, pool => {
            let row = sqlx::query_as(
                "SELECT key_hash, active, expires, note, created, account FROM licenses \
                 WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let products = sqlx::query_as(
                "SELECT product FROM license_products WHERE license = $1 ORDER BY product",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            (row, products)
        });
        Ok(row.map(|(hash, active, expires, note, created, account)| {
            let license = License {
                id: id.to_owned(),
                products: products.into_iter().map(|(p,)| p).collect(),
                active,
                expires,
                note,
                created,
                account,
            };
            (hash, license)
        }))
    }

    /// The license this key opens, if the key is right; `None` for a wrong secret and an
    /// unknown id alike, in the same time.
    pub(crate) async fn license_verify(&self, key: &LicenseKey) -> Result<Option<License>> {
        let row = self.license_row_recent(&key.id).await?;
        let presented = key.hash();
        // Compare against something of the same length, to take the same time.
        let nothing = sha256(b"no such license");
        let stored = row.as_ref().map_or(&nothing[..], |row| &row.0[..]);
        let matches: bool = stored.ct_eq(&presented[..]).into();
        Ok(row.filter(|_| matches).map(|row| row.1.clone()))
    }

    /// Changes what a license holds; `None` leaves a field as it is.
    pub(crate) async fn license_update(
        &self,
        id: &str,
        products: Option<&[String]>,
        active: Option<bool>,
        expires: Option<Option<i64>>,
        note: Option<&str>,
    ) -> Result<License> {
        if let Some(note) = note {
            check_note(note)?;
        }
        check_expires(expires.flatten())?;
        if let Some(products) = products {
            self.products_exist(products).await?;
        }
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(String,)> = sqlx::query_as("SELECT id FROM licenses WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(not_found_license(id));
            }
            if let Some(active) = active {
                sqlx::query("UPDATE licenses SET active = $1 WHERE id = $2")
                    .bind(active)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(expires) = expires {
                sqlx::query("UPDATE licenses SET expires = $1 WHERE id = $2")
                    .bind(expires)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(note) = note {
                sqlx::query("UPDATE licenses SET note = $1 WHERE id = $2")
                    .bind(note)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(products) = products {
                sqlx::query("DELETE FROM license_products WHERE license = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                insert_rows!(
                    tx,
                    "INSERT INTO license_products (license, product) VALUES ($1, $2)",
                    id,
                    &product_set(products)
                );
            }
            tx.commit().await?;
        });
        self.license_get(id).await
    }

    pub(crate) async fn license_remove(&self, id: &str) -> Result<()> {
        let removed = on_pool!(self, change, pool => {
            sqlx::query("DELETE FROM licenses WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            return Err(not_found_license(id));
        }
        Ok(())
    }

    pub(crate) async fn account_add(
        &self,
        name: &str,
        password: &str,
        products: &[String],
    ) -> Result<Account> {
        check_account_name(name)?;
        check_password(password)?;
        self.products_exist(products).await?;
        self.account_insert(name, password, products).await
    }

    /// An account its holder makes in the web pages: no product yet (redeeming a license key
    /// brings them).
    pub(crate) async fn account_sign_up(&self, name: &str, password: &str) -> Result<Account> {
        check_account_name(name)?;
        check_password(password)?;
        self.account_insert(name, password, &[]).await
    }

    async fn account_insert(
        &self,
        name: &str,
        password: &str,
        products: &[String],
    ) -> Result<Account> {
        let products = product_set(products);
        let owned = password.to_owned();
        let hash = argon2(move || hash_password(&owned)).await??;
        let created = now();
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let inserted = sqlx::query(
                "INSERT INTO accounts (name, password_hash, active, created) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&hash)
            .bind(true)
            .bind(created)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("the account {name:?} exists already")));
            }
            insert_rows!(
                tx,
                "INSERT INTO account_products (account, product) VALUES ($1, $2)",
                name,
                &products
            );
            tx.commit().await?;
        });
        Ok(Account {
            name: name.to_owned(),
            products,
            active: true,
            created,
        })
    }

    pub(crate) async fn account_list(&self) -> Result<Vec<Account>> {
        type Row = (String, bool, i64);
        let (rows, pairs): (Vec<Row>, Pairs) = on_pool!(self, read, pool => {
            let rows = sqlx::query_as("SELECT name, active, created FROM accounts ORDER BY name")
                .fetch_all(pool)
                .await?;
            let pairs = sqlx::query_as(
                "SELECT account, product FROM account_products ORDER BY account, product",
            )
            .fetch_all(pool)
            .await?;
            (rows, pairs)
        });
        Ok(rows
            .into_iter()
            .map(|(name, active, created)| Account {
                products: products_of(&name, &pairs),
                name,
                active,
                created,
            })
            .collect())
    }

    pub(crate) async fn account_get(&self, name: &str) -> Result<Account> {
        self.account_row(name)
            .await?
            .map(|(_, a)| a)
            .ok_or_else(|| StoreError::NotFound(format!("account {name:?}")))
    }

    pub(super) async fn account_row(&self, name: &str) -> Result<Option<(String, Account)>> {
        type Row = (String, bool, i64);
        let (row, products): (Option<Row>, Vec<(String,)>) = on_pool!(self, read, pool => {
            let row = sqlx::query_as(
                "SELECT password_hash, active, created FROM accounts WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?;
            let products = sqlx::query_as(
                "SELECT product FROM account_products WHERE account = $1 ORDER BY product",
            )
            .bind(name)
            .fetch_all(pool)
            .await?;
            (row, products)
        });
        Ok(row.map(|(hash, active, created)| {
            let account = Account {
                name: name.to_owned(),
                products: products.into_iter().map(|(p,)| p).collect(),
                active,
                created,
            };
            (hash, account)
        }))
    }

    /// The account, if the password is right; `None` for a wrong password and an unknown name
    /// alike, with an Argon2 verification either way. Runs the hash on the blocking pool.
    pub(crate) async fn account_verify(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Account>> {
        let row = if check_account_name(name).is_ok() {
            self.account_row(name).await?
        } else {
            None
        };
        let (hash, account) = match row {
            Some((hash, account)) => (Some(hash), Some(account)),
            None => (None, None),
        };
        let password = password.to_owned();
        let ok = argon2(move || {
            let hash = hash.as_deref().unwrap_or_else(|| stand_in_hash());
            verify_password(hash, &password)
        })
        .await?;
        Ok(account.filter(|_| ok))
    }

    pub(crate) async fn account_update(
        &self,
        name: &str,
        products: Option<&[String]>,
        active: Option<bool>,
        password: Option<&str>,
    ) -> Result<Account> {
        if let Some(products) = products {
            self.products_exist(products).await?;
        }
        let hash = match password {
            Some(p) => {
                check_password(p)?;
                let owned = p.to_owned();
                Some(argon2(move || hash_password(&owned)).await??)
            }
            None => None,
        };
        on_pool!(self, change, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(String,)> =
                sqlx::query_as("SELECT name FROM accounts WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("account {name:?}")));
            }
            if let Some(active) = active {
                sqlx::query("UPDATE accounts SET active = $1 WHERE name = $2")
                    .bind(active)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(hash) = &hash {
                sqlx::query("UPDATE accounts SET password_hash = $1 WHERE name = $2")
                    .bind(hash)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(products) = products {
                sqlx::query("DELETE FROM account_products WHERE account = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                insert_rows!(
                    tx,
                    "INSERT INTO account_products (account, product) VALUES ($1, $2)",
                    name,
                    &product_set(products)
                );
            }
            tx.commit().await?;
        });
        self.account_get(name).await
    }

    pub(crate) async fn account_remove(&self, name: &str) -> Result<()> {
        let removed = on_pool!(self, change, pool => {
            sqlx::query("DELETE FROM accounts WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if removed == 0 {
            return Err(StoreError::NotFound(format!("account {name:?}")));
        }
        Ok(())
    }
}

impl Store {
    /// Redeems the license `id` into `account`: from then on its products are the account's
    /// too, while it is active and unexpired. A license is redeemed once: again, into this
    /// account or another, is a conflict saying which.
    pub(crate) async fn license_redeem(&self, id: &str, account: &str) -> Result<()> {
        let taken: Option<(Option<String>,)> = on_pool!(self, change, pool => {
            let updated = sqlx::query(
                "UPDATE licenses SET account = $1 WHERE id = $2 AND account IS NULL",
            )
            .bind(account)
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
            if updated == 1 {
                None
            } else {
                sqlx::query_as("SELECT account FROM licenses WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
            }
        });
        match taken {
            None => Ok(()),
            Some((Some(holder),)) if holder == account => Err(StoreError::Conflict(
                "this license is already redeemed into this account".to_owned(),
            )),
            Some(_) => Err(StoreError::Conflict(
                "this license has already been redeemed into another account".to_owned(),
            )),
        }
    }

    /// The licenses redeemed into `account`, oldest first.
    pub(crate) async fn account_licenses(&self, account: &str) -> Result<Vec<License>> {
        let (rows, pairs): (Vec<ListedLicense>, Vec<(String, String)>) = on_pool!(self, read, pool => {
            let rows = sqlx::query_as(
                "SELECT id, active, expires, note, created, account FROM licenses \
                 WHERE account = $1 ORDER BY created, id",
            )
            .bind(account)
            .fetch_all(pool)
            .await?;
            let pairs = sqlx::query_as(
                "SELECT lp.license, lp.product FROM license_products lp \
                 JOIN licenses l ON l.id = lp.license WHERE l.account = $1 \
                 ORDER BY lp.license, lp.product",
            )
            .bind(account)
            .fetch_all(pool)
            .await?;
            (rows, pairs)
        });
        Ok(licenses_of(rows, &pairs))
    }
}

/// What an account holds: its own products and those of the licenses redeemed into it that
/// are active and unexpired at `at`, each once; and when the first of those licenses ends
/// (`None`: none of them ends).
pub(crate) fn account_holdings(
    account: &Account,
    redeemed: &[License],
    at: i64,
) -> (Vec<String>, Option<i64>) {
    let open: Vec<&License> = redeemed
        .iter()
        .filter(|l| l.active && l.expires.is_none_or(|e| e > at))
        .collect();
    let mut products = account.products.clone();
    products.extend(open.iter().flat_map(|l| l.products.iter().cloned()));
    (
        product_set(&products),
        open.iter().filter_map(|l| l.expires).min(),
    )
}

fn not_found_license(id: &str) -> StoreError {
    StoreError::NotFound(format!("license {id:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_holds_its_own_products_and_its_open_licenses_until_the_first_ends() {
        let account = Account {
            name: "a".into(),
            products: vec!["own".into(), "both".into()],
            active: true,
            created: 0,
        };
        let license = |id: &str, products: &[&str], active, expires| License {
            id: id.into(),
            products: products.iter().map(|p| (*p).to_owned()).collect(),
            active,
            expires,
            note: String::new(),
            created: 0,
            account: None,
        };
        let redeemed = [
            license("l1", &["both", "year"], true, Some(2000)),
            license("l2", &["forever"], true, None),
            license("l3", &["revoked"], false, None),
            license("l4", &["over"], true, Some(1000)),
            license("l5", &["later"], true, Some(3000)),
        ];
        let (products, expires) = account_holdings(&account, &redeemed, 1000);
        assert_eq!(products, ["both", "forever", "later", "own", "year"]);
        assert_eq!(expires, Some(2000));
        assert_eq!(
            account_holdings(&account, &[], 1000),
            (vec!["both".into(), "own".into()], None)
        );
    }

    #[test]
    fn keys_parse_and_refuse() {
        let (id, secret) = new_key().unwrap();
        let key = format!("tg_{id}_{secret}");
        let parsed = LicenseKey::parse(&key).unwrap();
        assert_eq!(parsed.id, id);
        assert_eq!(parsed.hash(), sha256(secret.as_bytes()));
        assert!(
            !format!("{parsed:?}").contains(&secret),
            "Debug never shows the secret"
        );
        for bad in [
            "",
            "tg_",
            &format!("tg_{id}"),
            &format!("tg_{id}_"),
            &format!("xx_{id}_{secret}"),
            &format!("tg_{}_{secret}", &id[..9]),
            &format!("tg_{}X_{secret}", &id[..9]),
            &format!("tg_{id}_{}", &secret[..20]),
            &format!("tg_{id}_{secret}'; DROP TABLE licenses; --"),
        ] {
            assert!(LicenseKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsE"));
        assert!(!verify_password("not a hash", "x"));
        assert!(!verify_password(stand_in_hash(), ""));
    }
}
