//! A provider that panics in every call. It exists for the tests: `export_provider!` must catch
//! the panic and answer `other` with the panic's message, and the helper must go on with the
//! next provider. It is never installed.

use tollgate_plugin_api::{Credential, Provider, ProviderError, Request};

#[derive(Debug)]
pub struct Panicking;

tollgate_plugin_api::export_provider! {
    provider: Panicking,
    new: Panicking,
    name: "panicking",
    description: "panics in every call (a test fixture)",
    capabilities: [lookup, store, erase],
}

impl Provider for Panicking {
    fn lookup(&self, request: &Request) -> Result<Credential, ProviderError> {
        panic!("lookup of {} went wrong on purpose", request.url)
    }

    fn store(&self, _: &Request, _: &Credential) -> Result<(), ProviderError> {
        panic!("store went wrong on purpose")
    }

    fn erase(&self, _: &Request) -> Result<(), ProviderError> {
        panic!("erase went wrong on purpose")
    }
}
