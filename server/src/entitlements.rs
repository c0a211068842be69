//! The entitlement service: a credential (a license key, or an account's name and password)
//! and a list of refs in, short-lived download tokens for exactly the refs the credential's
//! products cover out.
//!
//! Wrong credentials get one answer, whatever was wrong. Failed attempts are counted per client
//! (an IPv4 address, an IPv6 /64) and per account; past the limit, attempts are refused before
//! the credential is even checked. A license key id is not counted: its secret has 256 bits,
//! which no number of guesses finds, and counting failures against it would let anyone who
//! knows the id lock its owner out. An account's password may be weak, so its name is counted,
//! and a guesser can lock an account out for a window: that is the price of stopping them. The repository server never learns who a customer is: the token
//! names only refs, repositories and an opaque subject.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use serde::Serialize;

use crate::audit::AuditWriter;
use crate::clients::limit_key;
use crate::limiter::FailureLimiter;
use crate::refpattern::RefPattern;
use crate::secrets::Secret;
use crate::store::{
    Account, DeviceKey, IssuedToken, LicenseKey, Store, StoreError, account_holdings,
    is_account_name, now,
};
use crate::tokens::{Grant, SigningKey, issue};

/// How many clients and identities the failure limiters remember at most.
const LIMITER_CAPACITY: usize = 100_000;
/// The longest `Authorization` value read as a credential (a license key, or an account's name
/// and password, in base64, fit well within it); a longer one is wrong, undecoded.
const MAX_CREDENTIAL: usize = 4096;
/// How many verified Basic credentials are remembered at most.
const REMEMBERED: usize = 10_000;

/// A credential as the request presents it.
#[derive(Debug)]
pub(crate) enum Credential {
    License(LicenseKey),
    /// A device credential, from the web flow: its account's.
    Device(DeviceKey),
    Account {
        name: String,
        password: Secret,
    },
    /// Something in the Authorization header that is neither: wrong, like a wrong key.
    Unreadable,
}

impl Credential {
    /// Reads `Authorization: Bearer tg_...` (or `tgd_...`, a device credential) or
    /// `Authorization: Basic <name:password>`, where a password of a license key's or device
    /// credential's form is that key, whatever the name (so that an ostree remote's URL, which
    /// keeps only a user and a password, can carry one).
    pub(crate) fn from_header(value: &[u8]) -> Credential {
        if value.len() > MAX_CREDENTIAL {
            return Credential::Unreadable;
        }
        let Some((scheme, rest)) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().split_once(' '))
        else {
            return Credential::Unreadable;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return Credential::key(rest).unwrap_or(Credential::Unreadable);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                if let Some(key) = Credential::key(password) {
                    return key;
                }
                return Credential::Account {
                    name: name.to_owned(),
                    password: Secret::new(password.to_owned()),
                };
            }
        }
        Credential::Unreadable
    }

    /// A license key or a device credential, as typed.
    pub(crate) fn key(text: &str) -> Option<Credential> {
        LicenseKey::parse(text)
            .map(Credential::License)
            .or_else(|| DeviceKey::parse(text).map(Credential::Device))
    }

    /// What failures are counted against besides the client address: an account name that
    /// could exist (a name no account can have is not remembered, so that guessers cannot fill
    /// the table with long made-up names). Never a license id: see the module's comment.
    fn identity(&self) -> Option<String> {
        match self {
            Credential::Account { name, .. } if is_account_name(name) => {
                Some(format!("account:{name}"))
            }
            Credential::License(_)
            | Credential::Device(_)
            | Credential::Account { .. }
            | Credential::Unreadable => None,
        }
    }
}

/// Whether a ref needs a token, as the repository's index says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefKind {
    Public,
    Gated,
    Unknown,
}

/// The answer, in the shape the Flatpak authenticator hands to flatpak: token → refs (`""` for
/// refs that need no token), and the refs denied, with why; of the refs denied `not-licensed`,
/// those a product on sale covers, with that product's slug (its buy page is
/// `/account/buy?product=SLUG`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Answer {
    pub tokens: BTreeMap<String, Vec<String>>,
    pub denied: BTreeMap<String, &'static str>,
    #[serde(rename = "for-sale", skip_serializing_if = "BTreeMap::is_empty")]
    pub for_sale: BTreeMap<String, String>,
    pub expires_in: u64,
}

/// What a right credential opens: its products (with their ref patterns), and when it expires.
/// Never the license's id or key: only what its holder may know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entitled {
    /// `license` or `account`.
    pub kind: &'static str,
    /// The account's name, for an account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub products: Vec<EntitledProduct>,
    /// Unix seconds; `None` for never.
    pub expires: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct EntitledProduct {
    pub slug: String,
    pub name: String,
    pub refs: Vec<String>,
    pub active: bool,
}

/// Why the right credentials get no tokens now. Each owns its stable `error-type` and the
/// message its holder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    LicenseInactive,
    LicenseExpired,
    AccountInactive,
}

impl Refusal {
    #[cfg(test)]
    pub(crate) const ALL: [Refusal; 3] = [
        Refusal::LicenseInactive,
        Refusal::LicenseExpired,
        Refusal::AccountInactive,
    ];

    pub(crate) fn error_type(self) -> &'static str {
        match self {
            Refusal::LicenseInactive => "license-inactive",
            Refusal::LicenseExpired => "license-expired",
            Refusal::AccountInactive => "account-inactive",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::LicenseInactive => "this license has been deactivated: ask the vendor",
            Refusal::LicenseExpired => "this license has expired: renew it with the vendor",
            Refusal::AccountInactive => "this account has been deactivated: ask the vendor",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum IssueError {
    #[error("no credentials")]
    NoCredentials,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("refused: {}", .0.error_type())]
    Refused(Refusal),
    #[error("too many failures")]
    TooManyFailures(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing the token")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Who a token is for, as recorded.
struct Holder {
    subject: String,
    license: Option<String>,
    account: Option<String>,
    products: Vec<String>,
    /// When the license expires, if it does: no token outlives it.
    expires: Option<i64>,
}

#[derive(Debug)]
pub(crate) struct Entitlements {
    store: Store,
    signer: ArcSwap<SigningKey>,
    ttl: u64,
    by_address: FailureLimiter<IpAddr>,
    by_identity: FailureLimiter<String>,
    /// Wrong admin tokens, counted apart: customers' mistakes never lock out the admin API,
    /// nor the other way round.
    admin_by_address: FailureLimiter<IpAddr>,
    audit: Arc<AuditWriter>,
    /// Basic credentials checked right, by a hash of the repository and the header (never the
    /// secret), with the store's entitlement epoch they were checked at.
    remembered: quick_cache::sync::Cache<[u8; 32], (u64, Arc<Grant>)>,
}

impl Entitlements {
    pub(crate) fn new(
        store: Store,
        signer: SigningKey,
        ttl: u64,
        max_failures: u32,
        failure_window: Duration,
        audit: Arc<AuditWriter>,
    ) -> Entitlements {
        Entitlements {
            store,
            signer: ArcSwap::from_pointee(signer),
            ttl,
            by_address: FailureLimiter::new(max_failures, failure_window, LIMITER_CAPACITY),
            by_identity: FailureLimiter::new(max_failures, failure_window, LIMITER_CAPACITY),
            admin_by_address: FailureLimiter::new(max_failures, failure_window, LIMITER_CAPACITY),
            audit,
            remembered: quick_cache::sync::Cache::new(REMEMBERED),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn ttl(&self) -> u64 {
        self.ttl
    }

    /// How long the client address is still refused the admin API after wrong admin tokens.
    pub(crate) fn admin_blocked(&self, client: IpAddr) -> Option<Duration> {
        self.admin_by_address.blocked(&limit_key(client))
    }

    /// Counts a wrong admin token against the client address.
    pub(crate) fn admin_failed(&self, client: IpAddr) {
        self.admin_by_address.fail(&limit_key(client));
    }

    /// How long the client address is still refused (after failed attempts, or sign-ups:
    /// see [`Entitlements::signed_up`]).
    pub(crate) fn blocked(&self, client: IpAddr) -> Option<Duration> {
        self.by_address.blocked(&limit_key(client))
    }

    /// Counts an account made in the web pages against the client address, as a failure
    /// counts: one address makes at most `max-failures` accounts per `failure-window`.
    pub(crate) fn signed_up(&self, client: IpAddr) {
        self.by_address.fail(&limit_key(client));
    }

    /// Signs with `key` from now on (after a rotation).
    pub(crate) fn set_signer(&self, key: SigningKey) {
        self.signer.store(Arc::new(key));
    }

    pub(crate) fn signer_kid(&self) -> String {
        self.signer.load().kid().to_owned()
    }

    /// Checks the credential, counting a wrong one against the client and the account it
    /// names: the holder, or why there is none.
    async fn authenticate(
        &self,
        credential: Option<Credential>,
        client: IpAddr,
    ) -> Result<Holder, IssueError> {
        // An IPv6 client counts by its /64, as the connection limits do.
        let client = limit_key(client);
        if let Some(left) = self.by_address.blocked(&client) {
            return Err(IssueError::TooManyFailures(left));
        }
        let credential = credential.ok_or(IssueError::NoCredentials)?;
        let identity = credential.identity();
        // Checks take turns per address and per identity, so that guesses sent all at once
        // cannot all be checked before the first failure counts.
        let address_turn = self
            .by_address
            .turn(&client)
            .await
            .map_err(IssueError::TooManyFailures)?;
        let identity_turn = match &identity {
            Some(identity) => Some(
                self.by_identity
                    .turn(identity)
                    .await
                    .map_err(IssueError::TooManyFailures)?,
            ),
            None => None,
        };
        let checked = self.check(&credential).await;
        if matches!(checked, Ok(None)) {
            self.by_address.fail(&client);
            if let Some(identity) = &identity {
                self.by_identity.fail(identity);
            }
        }
        drop((identity_turn, address_turn));
        checked?.ok_or(IssueError::InvalidCredentials)
    }

    /// What an `Authorization: Basic` credential (the header's value) opens in the repository
    /// `repo`, as a grant the gate reads like a token's. It is checked as at the token endpoint
    /// (the same limiter, the same constant-time checks), then remembered by a hash of the
    /// header until products, licenses or accounts change anywhere, so that a pull costs one
    /// check and not one per object (nor an Argon2 hash per object, for an account).
    pub(crate) async fn basic_grant(
        &self,
        header: &[u8],
        repo: &str,
        sole_repo: bool,
        client: IpAddr,
    ) -> Result<Arc<Grant>, IssueError> {
        let key = remembered_key(repo, header);
        // Read before the check: a change made while it runs leaves the result stale at once.
        let epoch = self.store.entitlement_epoch().await?;
        let unexpired = |grant: &Grant| grant.expires > u64::try_from(now()).unwrap_or(u64::MAX);
        if let Some((at, grant)) = self.remembered.get(&key)
            && at == epoch
            && unexpired(&grant)
        {
            return Ok(grant);
        }
        let holder = self
            .authenticate(Some(Credential::from_header(header)), client)
            .await?;
        let mut patterns = Vec::new();
        for product in self.store.products_named(&holder.products).await? {
            if product.active && product.in_repo(repo, sole_repo) {
                patterns.extend(product.refs.iter().filter_map(|p| RefPattern::new(p).ok()));
            }
        }
        let expires = holder
            .expires
            .map_or(u64::MAX, |e| u64::try_from(e).unwrap_or(0));
        let grant = Arc::new(Grant::from_products(
            holder.subject,
            repo.to_owned(),
            patterns,
            expires,
        ));
        self.remembered.insert(key, (epoch, Arc::clone(&grant)));
        Ok(grant)
    }

    /// What a credential opens, without issuing anything: for a client checking a credential
    /// before keeping it. Wrong credentials count as for [`Entitlements::issue`].
    pub(crate) async fn entitled(
        &self,
        credential: Option<Credential>,
        client: IpAddr,
    ) -> Result<Entitled, IssueError> {
        let holder = self.authenticate(credential, client).await?;
        let products = self
            .store
            .products_named(&holder.products)
            .await?
            .into_iter()
            .map(|product| EntitledProduct {
                slug: product.slug,
                name: product.name,
                refs: product.refs,
                active: product.active,
            })
            .collect();
        Ok(Entitled {
            kind: if holder.license.is_some() {
                "license"
            } else {
                "account"
            },
            account: holder.account,
            products,
            expires: holder.expires,
        })
    }

    /// Checks the credential, and issues a token for the gated refs its products in `repo`
    /// cover (`sole_repo`: whether `repo` is the only repository served, which products made
    /// without a repository belong to). `refs` are the refs asked for, each with what the
    /// repository's index says of it.
    pub(crate) async fn issue(
        &self,
        credential: Option<Credential>,
        repo: &str,
        sole_repo: bool,
        refs: &[(String, RefKind)],
        client: IpAddr,
    ) -> Result<Answer, IssueError> {
        let holder = self.authenticate(credential, client).await?;

        // A product opens refs of its own repository only: another repository may have a ref
        // of the same name that the license was never sold.
        let mut products = self.store.products_named(&holder.products).await?;
        products.retain(|p| p.in_repo(repo, sole_repo));
        // No token outlives the license it was issued for.
        let issued = now();
        let ttl = match holder.expires {
            Some(expires) => self
                .ttl
                .min(u64::try_from(expires.saturating_sub(issued)).unwrap_or(0))
                .max(1),
            None => self.ttl,
        };
        let mut answer = Answer {
            tokens: BTreeMap::new(),
            denied: BTreeMap::new(),
            for_sale: BTreeMap::new(),
            expires_in: ttl,
        };
        let mut granted = Vec::new();
        for (name, kind) in refs {
            match kind {
                RefKind::Public => answer
                    .tokens
                    .entry(String::new())
                    .or_default()
                    .push(name.clone()),
                RefKind::Gated => {
                    let mut covering = products.iter().filter(|p| p.covers(name)).peekable();
                    if covering.peek().is_none() {
                        answer.denied.insert(name.clone(), "not-licensed");
                    } else if covering.any(|p| p.active) {
                        granted.push(name.clone());
                    } else {
                        answer.denied.insert(name.clone(), "product-inactive");
                    }
                }
                RefKind::Unknown => {
                    answer.denied.insert(name.clone(), "unknown-ref");
                }
            }
        }
        // What is on sale of what is not licensed: looked at only once a ref is denied.
        let unlicensed: Vec<String> = answer
            .denied
            .iter()
            .filter(|(_, why)| **why == "not-licensed")
            .map(|(r, _)| r.clone())
            .collect();
        if !unlicensed.is_empty() {
            let products = self.store.products_all().await?;
            for r in unlicensed {
                let on_sale = products.iter().find(|p| {
                    p.active
                        && p.purchase_url.is_some()
                        && p.in_repo(repo, sole_repo)
                        && p.covers(&r)
                });
                if let Some(product) = on_sale {
                    answer.for_sale.insert(r, product.slug.clone());
                }
            }
        }
        if !granted.is_empty() {
            let signer = self.signer.load();
            let signed = issue(&signer, &holder.subject, &[repo.to_owned()], &granted, ttl)
                .map_err(|e| IssueError::Signing(e.into()))?;
            crate::metrics::METRICS.tokens_issued(1);
            self.audit
                .issued(IssuedToken {
                    seq: 0,
                    jti: signed.jti,
                    subject: holder.subject,
                    license: holder.license,
                    account: holder.account,
                    repo: repo.to_owned(),
                    refs: granted.clone(),
                    client: client.to_string(),
                    issued,
                    expires: issued.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
                })
                .await;
            answer.tokens.insert(signed.token, granted);
        }
        Ok(answer)
    }

    /// The holder of a right credential that may get tokens now; `None` for a wrong one.
    async fn check(&self, credential: &Credential) -> Result<Option<Holder>, IssueError> {
        match credential {
            Credential::License(key) => {
                let Some(license) = self.store.license_verify(key).await? else {
                    return Ok(None);
                };
                if !license.active {
                    return Err(IssueError::Refused(Refusal::LicenseInactive));
                }
                if license.expires.is_some_and(|e| e <= now()) {
                    return Err(IssueError::Refused(Refusal::LicenseExpired));
                }
                Ok(Some(Holder {
                    subject: format!("license:{}", license.id),
                    license: Some(license.id),
                    account: None,
                    products: license.products,
                    expires: license.expires,
                }))
            }
            Credential::Account { name, password } => {
                let Some(account) = self.store.account_verify(name, password.expose()).await?
                else {
                    return Ok(None);
                };
                self.account_holder(account).await.map(Some)
            }
            Credential::Device(key) => {
                let Some(name) = self.store.device_verify(key).await? else {
                    return Ok(None);
                };
                let account = self.store.account_get(&name).await?;
                self.account_holder(account).await.map(Some)
            }
            Credential::Unreadable => Ok(None),
        }
    }
}

impl Entitlements {
    /// What an account that proved itself holds, unless it is deactivated.
    async fn account_holder(&self, account: Account) -> Result<Holder, IssueError> {
        if !account.active {
            return Err(IssueError::Refused(Refusal::AccountInactive));
        }
        // With the licenses redeemed into it; no token outlives the first of them to end (so
        // none outlives a license it may be opening).
        let redeemed = self.store.account_licenses(&account.name).await?;
        let (products, expires) = account_holdings(&account, &redeemed, now());
        Ok(Holder {
            subject: format!("account:{}", account.name),
            license: None,
            account: Some(account.name),
            products,
            expires,
        })
    }
}

/// What a Basic credential is remembered by: a digest of the repository's name and the header.
fn remembered_key(repo: &str, header: &[u8]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(repo.as_bytes());
    context.update(&[0]);
    context.update(header);
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_headers() {
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(matches!(
            Credential::from_header(basic("alice:pa:ss").as_bytes()),
                        Credential::Account { name, password } if name == "alice" && password.expose() == "pa:ss"
        ));
        let key = "tg_abcdefghij_0123456789012345678901234567890123456789012";
        assert!(matches!(
            Credential::from_header(format!("Bearer {key}").as_bytes()),
            Credential::License(_)
        ));
        // A password of a license key's form is that key, whatever the user name.
        for user in ["", "anyone", "tg"] {
            assert!(matches!(
                Credential::from_header(basic(&format!("{user}:{key}")).as_bytes()),
                Credential::License(k) if k.id == "abcdefghij"
            ));
        }
        // A device credential, the same ways.
        let device = "tgd_abcdefghij_0123456789012345678901234567890123456789012";
        for header in [
            format!("Bearer {device}"),
            basic(&format!("device:{device}")),
        ] {
            assert!(matches!(
                Credential::from_header(header.as_bytes()),
                Credential::Device(k) if k.id == "abcdefghij"
            ));
        }
        let huge = basic(&format!("alice:{}", "x".repeat(MAX_CREDENTIAL)));
        assert!(matches!(
            Credential::from_header(huge.as_bytes()),
            Credential::Unreadable
        ));
        assert!(matches!(
            Credential::from_header(b"Basic \xff\xfe"),
            Credential::Unreadable
        ));
        let not_utf8 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"alice:\xff")
        );
        assert!(matches!(
            Credential::from_header(not_utf8.as_bytes()),
            Credential::Unreadable
        ));
        for bad in [
            "",
            "Bearer",
            "Bearer x",
            "Basic !!!",
            &basic("no colon"),
            "Digest x",
            key,
        ] {
            assert!(
                matches!(
                    Credential::from_header(bad.as_bytes()),
                    Credential::Unreadable
                ),
                "{bad:?}"
            );
        }
    }
}
