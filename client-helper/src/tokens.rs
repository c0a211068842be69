//! Getting download tokens: from the cache when it has them all, else from the entitlement
//! service with a credential from the providers (or one the caller got from the user). The
//! command line and the authenticator both go through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use tollgate_plugin_api::Credential;

use crate::cache::{Cache, now};
use crate::chain::{Chain, failures};
use crate::config::Config;
use crate::service::{self, ServiceError, Want};

/// Ref → token, `""` for a ref that needs none.
pub(crate) type RefTokens = BTreeMap<String, String>;

/// Why no tokens.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No provider has a credential for the URL.
    NoCredential { url: String, asked: Vec<String> },
    /// The service refused or could not be reached.
    Service { url: String, error: ServiceError },
    /// The credential is good, but these refs (ref → reason) are not for it; of them, those
    /// on sale (ref → product slug).
    Denied {
        url: String,
        denied: BTreeMap<String, String>,
        for_sale: BTreeMap<String, String>,
    },
}

impl Failure {
    /// What happened, for people, with what to do.
    pub(crate) fn explain(&self) -> String {
        match self {
            Failure::NoCredential { url, asked } => format!(
                "no license key or account is stored for {url}{}: store one with \
                 `tollgate-helper login {url} --key-stdin`",
                if asked.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", asked.join("; "))
                }
            ),
            Failure::Service { url, error } => error.explain(url),
            Failure::Denied {
                url,
                denied,
                for_sale,
            } => {
                let refs: Vec<String> = denied
                    .iter()
                    .map(|(r, why)| {
                        let buy;
                        let why = match (why.as_str(), for_sale.get(r)) {
                            ("not-licensed", Some(slug)) => {
                                buy = format!(
                                    "your license does not include it; buy it at \
                                     {url}/account/buy?product={slug}"
                                );
                                buy.as_str()
                            }
                            ("not-licensed", None) => {
                                "your license does not include it, and nothing is on sale \
                                 for it here: ask the vendor"
                            }
                            (why, _) => match why {
                                "product-inactive" => "the vendor has withdrawn it",
                                "unknown-ref" => "the server does not have it",
                                other => other,
                            },
                        };
                        format!("{r} ({why})")
                    })
                    .collect();
                format!("{url} gives no download token for {}", refs.join(", "))
            }
        }
    }
}

/// The providers, the cache and an HTTP client: what getting tokens needs.
#[derive(Debug, Clone)]
pub(crate) struct Helper {
    pub chain: Arc<Chain>,
    pub cache: Option<Cache>,
    pub client: reqwest::Client,
}

impl Helper {
    /// Loads the configuration and the providers.
    pub(crate) fn load() -> anyhow::Result<Helper> {
        let config = Config::read()?;
        Ok(Helper {
            chain: Arc::new(Chain::load(&crate::chain::search_path(), &config)),
            cache: Cache::default_location(),
            client: service::client()?,
        })
    }

    /// The cached tokens for every ref wanted, or `None` if any is missing.
    pub(crate) fn cached(&self, want: &Want) -> Option<RefTokens> {
        let cache = self.cache.as_ref()?;
        let found = cache.get(&want.url, &want.repo, &want.refs, now());
        (found.len() == want.refs.len()).then_some(found)
    }

    /// The first credential a provider has for `url`, and what the providers said (lines for
    /// people). Providers may block (or prompt, if `interactive`), so they run off the async
    /// workers.
    pub(crate) async fn stored_credential(
        &self,
        url: &str,
        interactive: bool,
    ) -> (Option<(String, Credential)>, Vec<String>) {
        let chain = Arc::clone(&self.chain);
        let url = url.to_owned();
        let asked = tokio::task::spawn_blocking(move || chain.lookup(&url, interactive)).await;
        match asked {
            Ok((found, asked)) => (found, failures(&asked)),
            Err(e) => (None, vec![format!("the providers failed: {e}")]),
        }
    }

    /// Stores `credential` for `url` with the first provider that can; which one, or what each
    /// said.
    pub(crate) async fn store_credential(
        &self,
        url: &str,
        credential: Credential,
        interactive: bool,
    ) -> Result<String, Vec<String>> {
        let chain = Arc::clone(&self.chain);
        let target = url.to_owned();
        let stored = tokio::task::spawn_blocking(move || {
            chain.store(&target, &credential, interactive, None)
        })
        .await;
        match stored {
            Ok((Some(provider), _)) => {
                // Only `tollgate-helper status` reads the list; one that cannot be written
                // costs nothing else.
                let _ = crate::known::remember(url);
                Ok(provider)
            }
            Ok((None, asked)) if asked.is_empty() => {
                Err(vec!["no provider can store credentials".to_owned()])
            }
            Ok((None, asked)) => Err(failures(&asked)),
            Err(e) => Err(vec![format!("the providers failed: {e}")]),
        }
    }

    /// Asks the service for every ref wanted with `credential`, and caches what it gives.
    pub(crate) async fn issue(
        &self,
        want: &Want,
        credential: &Credential,
    ) -> Result<RefTokens, Failure> {
        let issued = service::request_tokens(&self.client, want, credential)
            .await
            .map_err(|error| Failure::Service {
                url: want.url.clone(),
                error,
            })?;
        if let Some(cache) = &self.cache {
            // A cache that cannot be written costs a request next time, nothing more.
            let _ = cache.put(&want.url, &want.repo, &issued, now());
        }
        let mut tokens = RefTokens::new();
        for (token, refs) in &issued.tokens {
            for r in refs {
                tokens.insert(r.clone(), token.clone());
            }
        }
        let mut denied = issued.denied.clone();
        for r in &want.refs {
            if !tokens.contains_key(r) && !denied.contains_key(r) {
                denied.insert(r.clone(), "not answered".to_owned());
            }
        }
        if !denied.is_empty() {
            return Err(Failure::Denied {
                url: want.url.clone(),
                denied,
                for_sale: issued.for_sale.clone(),
            });
        }
        Ok(tokens)
    }

    /// The tokens for `want`: cached, or issued for the stored credential.
    pub(crate) async fn tokens(
        &self,
        want: &Want,
        interactive: bool,
    ) -> Result<RefTokens, Failure> {
        if let Some(tokens) = self.cached(want) {
            return Ok(tokens);
        }
        let (found, asked) = self.stored_credential(&want.url, interactive).await;
        let Some((_, credential)) = found else {
            return Err(Failure::NoCredential {
                url: want.url.clone(),
                asked,
            });
        };
        self.issue(want, &credential).await
    }
}

/// Tokens grouped: token → the refs it opens (`""` for refs that need none).
pub(crate) fn grouped(tokens: &RefTokens) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (r, token) in tokens {
        groups.entry(token.clone()).or_default().push(r.clone());
    }
    groups
}
