//! The provider chain: find providers in the search path, load each once, and ask them in the
//! configured order. The first provider with a credential for a URL wins; one that fails (is
//! locked, errs, panics, hangs, or answers against the ABI) is reported and the next is asked.
//!
//! The search path is [`PACKAGED_DIR`] (where the provider packages put them), [`SYSTEM_DIR`],
//! then `$XDG_DATA_HOME/tollgate/providers`, then the directories of `TOLLGATE_PROVIDER_PATH`
//! (separated by `:`), as `design.md` has it: a provider the system installed cannot be replaced
//! by a same-named one from the user's environment. In each directory the
//! files `libtollgate_provider_<name>.so` are providers, taken in name order; a second provider
//! with a name already loaded is refused. Relative directories are not searched. A library is
//! loaded (and its initialisers run) before its descriptor can say whether it is usable, so
//! everything in the search path is trusted like any installed library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_plugin_api::host::{self, CallError, LoadedProvider};
use tollgate_plugin_api::{Credential, ErrorKind, Request};

use crate::config::{Config, data_home};

/// Where distribution packages install providers: the multiarch library directory, so that
/// the providers of two architectures can be installed side by side. The `-dev` package's
/// pkg-config file names it as `providersdir`.
pub(crate) const PACKAGED_DIR: &str = concat!(
    "/usr/lib/",
    env!("TOLLGATE_MULTIARCH"),
    "/tollgate/providers"
);
/// Where providers installed by hand for the whole machine go.
pub(crate) const SYSTEM_DIR: &str = "/usr/lib/tollgate/providers";
const PREFIX: &str = "libtollgate_provider_";
const SUFFIX: &str = ".so";

/// The directories providers are found in, in order.
pub(crate) fn search_path() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(PACKAGED_DIR), PathBuf::from(SYSTEM_DIR)];
    dirs.extend(data_home().map(|d| d.join("tollgate/providers")));
    if let Some(path) = std::env::var_os("TOLLGATE_PROVIDER_PATH") {
        dirs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    dirs
}

/// A file in the search path that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// What one provider said when asked.
#[derive(Debug)]
pub(crate) struct Asked {
    pub provider: String,
    /// The provider's library.
    pub path: PathBuf,
    pub answer: Result<(), CallError>,
}

/// The providers found, in the order they are asked.
#[derive(Debug)]
pub(crate) struct Chain {
    pub providers: Vec<LoadedProvider>,
    pub refused: Vec<Refused>,
    /// Names the configuration orders that no provider has.
    pub missing: Vec<String>,
    pub timeout: Duration,
}

/// The provider files of `dir`, in name order; a directory that does not exist has none.
fn provider_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl Chain {
    /// Loads every provider of `dirs` and orders them as `config` says.
    pub(crate) fn load(dirs: &[PathBuf], config: &Config) -> Chain {
        let mut providers: Vec<LoadedProvider> = Vec::new();
        let mut refused = Vec::new();
        for dir in dirs {
            if !dir.is_absolute() {
                refused.push(Refused {
                    path: dir.clone(),
                    reason: "is not an absolute path, so it is not searched (it would depend on \
                             the current directory)"
                        .to_owned(),
                });
                continue;
            }
            let files = match provider_files(dir) {
                Ok(files) => files,
                Err(reason) => {
                    refused.push(Refused {
                        path: dir.clone(),
                        reason: format!("cannot be read: {reason}"),
                    });
                    continue;
                }
            };
            for path in files {
                match host::load(&path) {
                    Ok(p) => match providers.iter().find(|q| q.name == p.name) {
                        Some(first) => refused.push(Refused {
                            reason: format!(
                                "is another provider named {:?}; the one in {} is used",
                                p.name,
                                first.path.display()
                            ),
                            path,
                        }),
                        None => providers.push(p),
                    },
                    Err(e) => refused.push(Refused {
                        path,
                        reason: e.to_string(),
                    }),
                }
            }
        }
        // Configured names first, in their order; the rest as found.
        let rank = |p: &LoadedProvider| {
            config
                .providers
                .iter()
                .position(|n| *n == p.name)
                .unwrap_or(usize::MAX)
        };
        providers.sort_by_key(rank);
        let missing = config
            .providers
            .iter()
            .filter(|n| !providers.iter().any(|p| p.name == **n))
            .cloned()
            .collect();
        Chain {
            providers,
            refused,
            missing,
            timeout: Duration::from_secs(config.provider_timeout),
        }
    }

    /// The first credential a provider has for `url` (normalised), with its provider, and what
    /// each provider asked said.
    pub(crate) fn lookup(
        &self,
        url: &str,
        interactive: bool,
    ) -> (Option<(String, Credential)>, Vec<Asked>) {
        let request = Request {
            url: url.to_owned(),
            interactive,
        };
        let mut asked = Vec::new();
        for provider in self.providers.iter().filter(|p| p.capabilities.lookup) {
            match provider.lookup(&request, self.timeout) {
                Ok(credential) => {
                    asked.push(Asked {
                        provider: provider.name.clone(),
                        path: provider.path.clone(),
                        answer: Ok(()),
                    });
                    return (Some((provider.name.clone(), credential)), asked);
                }
                Err(e) => asked.push(Asked {
                    provider: provider.name.clone(),
                    path: provider.path.clone(),
                    answer: Err(e),
                }),
            }
        }
        (None, asked)
    }

    /// Stores `credential` for `url` with the provider named `only`, or else with the first
    /// that can store and succeeds; the name of the provider that kept it, and what the others
    /// said.
    pub(crate) fn store(
        &self,
        url: &str,
        credential: &Credential,
        interactive: bool,
        only: Option<&str>,
    ) -> (Option<String>, Vec<Asked>) {
        let request = Request {
            url: url.to_owned(),
            interactive,
        };
        let mut asked = Vec::new();
        let candidates = self.providers.iter().filter(|p| match only {
            Some(name) => p.name == name,
            None => p.capabilities.store,
        });
        for provider in candidates {
            let answer = provider.store(&request, credential, self.timeout);
            let stored = answer.is_ok();
            asked.push(Asked {
                provider: provider.name.clone(),
                path: provider.path.clone(),
                answer,
            });
            if stored {
                return (Some(provider.name.clone()), asked);
            }
        }
        (None, asked)
    }

    /// Has every provider that can erase forget the credentials for `url`.
    pub(crate) fn erase(&self, url: &str, interactive: bool) -> Vec<Asked> {
        let request = Request {
            url: url.to_owned(),
            interactive,
        };
        self.providers
            .iter()
            .filter(|p| p.capabilities.erase)
            .map(|p| Asked {
                provider: p.name.clone(),
                path: p.path.clone(),
                answer: p.erase(&request, self.timeout),
            })
            .collect()
    }
}

/// What the providers that failed said, one line each (with their files).
pub(crate) fn failures(asked: &[Asked]) -> Vec<String> {
    asked
        .iter()
        .filter(|a| a.answer.is_err())
        .map(Asked::line)
        .collect()
}

impl Asked {
    /// One line for people: which provider (and its file) said what.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} ({}): {}",
            self.provider,
            self.path.display(),
            describe(&self.answer)
        )
    }
}

/// A call's answer in a few words, for people.
pub(crate) fn describe(answer: &Result<(), CallError>) -> String {
    match answer {
        Ok(()) => "ok".to_owned(),
        Err(CallError::Provider(e)) if e.kind == ErrorKind::NotFound => {
            format!("has none ({})", e.message)
        }
        Err(e) => e.to_string(),
    }
}
