//! The Secret Service credential provider: credentials as items of the freedesktop Secret
//! Service (gnome-keyring, KeePassXC, ...), the same items libsecret's `secret-tool` reads and
//! writes.
//!
//! Each credential is one item with these attributes (libsecret compares attributes exactly):
//!
//! | attribute     | value                                                      |
//! |---------------|------------------------------------------------------------|
//! | `service`     | `tollgate`                                                 |
//! | `url`         | the entitlement service's URL, normalised                  |
//! | `kind`        | `license-key`, `password` or `token`                       |
//! | `user`        | the account name, for `password` only                      |
//! | `xdg:schema`  | `org.tollgate.Credential` (set on items this provider makes) |
//!
//! and the key, password or token itself as its secret (`text/plain`). So
//! `secret-tool store --label=... service tollgate url URL kind license-key` stores a key this
//! provider finds, and `secret-tool lookup service tollgate url URL kind license-key` reads one
//! it stored. When a URL has items of several kinds, a license key is preferred, then a
//! password, then a token.
//!
//! A locked collection is unlocked (the Secret Service prompts the user) when the request allows
//! interaction, and answered with `locked` when it does not.
//!
//! It depends on `tollgate-plugin-api` and on its own backend crates only.

use std::collections::HashMap;

use secret_service::{EncryptionType, Error, Item, SearchItemsResult, SecretService};
use tollgate_plugin_api::{Credential, ErrorKind, Kind, Provider, ProviderError, Request, Secret};

/// The `xdg:schema` of items this provider makes.
pub const SCHEMA: &str = "org.tollgate.Credential";

/// The provider: a runtime for the D-Bus calls; a connection is made per call, so a keyring
/// started (or restarted) after the provider was loaded is found.
#[derive(Debug)]
pub struct SecretServiceProvider {
    runtime: Option<tokio::runtime::Runtime>,
}

impl SecretServiceProvider {
    fn new() -> SecretServiceProvider {
        SecretServiceProvider {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok(),
        }
    }

    fn block_on<T>(
        &self,
        work: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| ProviderError::other("cannot start the provider's async runtime"))?
            .block_on(work)
    }
}

tollgate_plugin_api::export_provider! {
    provider: SecretServiceProvider,
    new: SecretServiceProvider::new(),
    name: "secret-service",
    description: "credentials in the freedesktop Secret Service (gnome-keyring, KeePassXC, ...)",
    capabilities: [lookup, store, erase],
}

/// A Secret Service error, as the ABI's kinds say it.
fn failed(what: &str, e: Error) -> ProviderError {
    match e {
        Error::Locked => ProviderError::new(
            ErrorKind::Locked,
            format!("{what}: the keyring is locked; unlock it, or allow interaction"),
        ),
        Error::Prompt => ProviderError::new(
            ErrorKind::Locked,
            format!("{what}: the keyring stays locked: its unlock prompt was dismissed"),
        ),
        Error::Zbus(zbus::Error::MethodError(ref name, _, _))
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown" =>
        {
            failed(what, Error::Unavailable)
        }
        Error::ZbusFdo(zbus::fdo::Error::ServiceUnknown(_)) => failed(what, Error::Unavailable),
        Error::Zbus(zbus::Error::Address(_) | zbus::Error::InputOutput(_)) => ProviderError::other(
            format!("{what}: cannot reach the session bus ({e}); is DBUS_SESSION_BUS_ADDRESS set?"),
        ),
        Error::Unavailable => ProviderError::other(format!(
            "{what}: no Secret Service is running on this session bus (is gnome-keyring or \
             KeePassXC running, and DBUS_SESSION_BUS_ADDRESS set?)"
        )),
        other => ProviderError::other(format!("{what}: {other}")),
    }
}

async fn connect() -> Result<SecretService<'static>, ProviderError> {
    SecretService::connect(EncryptionType::Dh)
        .await
        .map_err(|e| failed("connecting to the Secret Service", e))
}

/// The attributes every item of a URL has.
fn base_attributes(url: &str) -> HashMap<&str, &str> {
    HashMap::from([("service", "tollgate"), ("url", url)])
}

/// Every item for `url`, unlocked and locked.
async fn search<'a>(
    service: &'a SecretService<'a>,
    url: &str,
) -> Result<SearchItemsResult<Item<'a>>, ProviderError> {
    service
        .search_items(base_attributes(url))
        .await
        .map_err(|e| failed("searching the Secret Service", e))
}

/// Unlocks `locked` (the Secret Service may prompt) when the request allows interaction; the
/// `locked` error when it does not.
async fn unlock(locked: &[Item<'_>], request: &Request) -> Result<(), ProviderError> {
    if locked.is_empty() {
        return Ok(());
    }
    if !request.interactive {
        return Err(locked_error(&request.url));
    }
    for item in locked {
        item.unlock()
            .await
            .map_err(|e| failed("unlocking the keyring", e))?;
    }
    Ok(())
}

fn locked_error(url: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Locked,
        format!(
            "the keyring holding the credential for {url} is locked, and this request may not \
             ask to unlock it"
        ),
    )
}

/// The credential an item holds; `None` for an item of a kind this provider does not know.
async fn credential_of(item: &Item<'_>) -> Result<Option<Credential>, ProviderError> {
    let attributes = item
        .get_attributes()
        .await
        .map_err(|e| failed("reading an item", e))?;
    let Some(kind) = attributes.get("kind").and_then(|k| Kind::from_name(k)) else {
        return Ok(None);
    };
    let secret = item
        .get_secret()
        .await
        .map_err(|e| failed("reading an item's secret", e))?;
    let secret = String::from_utf8(secret)
        .map_err(|_| ProviderError::other("an item's secret is not UTF-8 text"))?;
    let secret = Secret::new(secret);
    Ok(match kind {
        Kind::LicenseKey => Some(Credential::LicenseKey(secret)),
        Kind::Token => Some(Credential::Token(secret)),
        Kind::Password => attributes.get("user").map(|user| Credential::Password {
            user: user.clone(),
            password: secret,
        }),
    })
}

/// The credentials the items hold, skipping items of kinds this provider does not know.
async fn credentials_of(items: &[Item<'_>]) -> Result<Vec<Credential>, ProviderError> {
    let mut found = Vec::new();
    for item in items {
        if let Some(credential) = credential_of(item).await? {
            found.push(credential);
        }
    }
    Ok(found)
}

impl Provider for SecretServiceProvider {
    fn lookup(&self, request: &Request) -> Result<Credential, ProviderError> {
        self.block_on(async {
            let service = connect().await?;
            let items = search(&service, &request.url).await?;
            let mut found = credentials_of(&items.unlocked).await?;
            // Locked items are opened when the request may prompt, or when nothing unlocked
            // holds a credential (and then, without interaction, the answer is `locked`).
            if !items.locked.is_empty() && (request.interactive || found.is_empty()) {
                unlock(&items.locked, request).await?;
                found.extend(credentials_of(&items.locked).await?);
            }
            found.sort_by_key(|c| Kind::ALL.iter().position(|k| *k == c.kind()));
            found.into_iter().next().ok_or_else(|| {
                ProviderError::not_found(format!(
                    "no item for {} in the Secret Service",
                    request.url
                ))
            })
        })
    }

    fn store(&self, request: &Request, credential: &Credential) -> Result<(), ProviderError> {
        self.block_on(async {
            let service = connect().await?;
            let collection = service
                .get_default_collection()
                .await
                .map_err(|e| failed("opening the default keyring", e))?;
            let locked = collection
                .is_locked()
                .await
                .map_err(|e| failed("opening the default keyring", e))?;
            if locked {
                if !request.interactive {
                    return Err(ProviderError::new(
                        ErrorKind::Locked,
                        "the default keyring is locked, and this request may not ask to unlock it",
                    ));
                }
                collection
                    .unlock()
                    .await
                    .map_err(|e| failed("unlocking the default keyring", e))?;
            }
            let mut attributes = base_attributes(&request.url);
            let kind = credential.kind().name();
            attributes.insert("kind", kind);
            attributes.insert("xdg:schema", SCHEMA);
            if let Some(user) = credential.user() {
                attributes.insert("user", user);
            }
            let label = format!("tollgate {kind} for {}", request.url);
            let created = collection
                .create_item(
                    &label,
                    attributes,
                    credential.secret().expose().as_bytes(),
                    true,
                    "text/plain",
                )
                .await
                .map_err(|e| failed("storing the item", e))?;
            // One credential per URL: the others for it go, once the new one is safely kept
            // (those in another, locked collection stay: they cannot be reached).
            let others = search(&service, &request.url).await?.unlocked;
            for item in others {
                if item.item_path != created.item_path {
                    item.delete()
                        .await
                        .map_err(|e| failed("removing the URL's older item", e))?;
                }
            }
            Ok(())
        })
    }

    fn erase(&self, request: &Request) -> Result<(), ProviderError> {
        self.block_on(async {
            let service = connect().await?;
            let found = search(&service, &request.url).await?;
            unlock(&found.locked, request).await?;
            let items: Vec<Item<'_>> = found.unlocked.into_iter().chain(found.locked).collect();
            if items.is_empty() {
                return Err(ProviderError::not_found(format!(
                    "no item for {} in the Secret Service",
                    request.url
                )));
            }
            for item in items {
                item.delete()
                    .await
                    .map_err(|e| failed("erasing an item", e))?;
            }
            Ok(())
        })
    }
}
