//! `tollgate-helper os-remote add|remove`: an ostree remote for OS updates whose URL carries
//! the stored credential, for `ostree admin upgrade` and the updaters built on it.
//!
//! An ostree remote keeps no secret but its URL, and ostree sends a URL's `user:password@` as
//! HTTP Basic on every request, which tollgate's gate takes as it takes a token. So the remote
//! file holds the license key (or the account's password): it is written 0600, for root alone.
//! ostree sends the user information as written, without percent-decoding it, so a credential
//! with characters a URL cannot carry as they are is refused rather than mangled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tollgate_plugin_api::Credential;
use tollgate_plugin_api::url::normalise;

use super::login::describe_entitled;
use super::{load_chain, note, out, runtime, what};
use crate::chain::failures;
use crate::files::{Mode, rewrite_locked_by_folder};

#[derive(Debug, Subcommand)]
pub(super) enum OsRemoteAction {
    /// Write SYSROOT/etc/ostree/remotes.d/NAME.conf (mode 0600): the remote NAME at URL, its
    /// URL carrying the credential stored for the service, so that `ostree admin upgrade`
    /// opens the gated OS refs. The credential is checked with the service first.
    Add(AddArgs),
    /// Remove SYSROOT/etc/ostree/remotes.d/NAME.conf, and with it the credential it carries.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub(super) struct AddArgs {
    /// The remote's name, as origins name it (`NAME:os/x86_64/stable`).
    name: String,
    /// The repository's URL.
    url: String,
    /// The system's root: the remote goes to SYSROOT/etc/ostree/remotes.d.
    #[command(flatten)]
    sysroot: SysrootArg,
    /// The entitlement service whose credential to use (default: URL).
    #[arg(long = "service-url", value_name = "URL")]
    service_url: Option<String>,
    /// The remote does not check GPG signatures (`gpg-verify=false`).
    #[arg(long)]
    no_gpg_verify: bool,
    /// Replace the remote's file if there is one.
    #[arg(long)]
    force: bool,
    /// Write nothing: print the `ostree remote add` command that adds this remote, credential
    /// and all (so it shows the secret).
    #[arg(long)]
    print: bool,
    /// Do not first ask the service whether the credential is right.
    #[arg(long)]
    no_check: bool,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    interactive: bool,
}

#[derive(Debug, Args)]
pub(super) struct RemoveArgs {
    name: String,
    #[command(flatten)]
    sysroot: SysrootArg,
}

#[derive(Debug, Args)]
struct SysrootArg {
    /// The system's root (default: /, the running system).
    #[arg(long, value_name = "DIR", default_value = "/")]
    sysroot: PathBuf,
}

impl SysrootArg {
    /// Where ostree looks for the remote `name` of this system.
    fn file(&self, name: &str) -> anyhow::Result<PathBuf> {
        check_name(name)?;
        Ok(self
            .sysroot
            .join("etc/ostree/remotes.d")
            .join(format!("{name}.conf")))
    }

    fn is_root(&self) -> bool {
        self.sysroot == Path::new("/")
    }
}

pub(super) fn run(action: OsRemoteAction) -> anyhow::Result<ExitCode> {
    match action {
        OsRemoteAction::Add(args) => add(&args),
        OsRemoteAction::Remove(args) => {
            let path = args.sysroot.file(&args.name)?;
            match std::fs::remove_file(&path) {
                Ok(()) => out(&format!("removed {}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("there is no {}: nothing to remove", path.display())
                }
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A remote name ostree takes that is also a plain file name: no folders, nothing hidden.
fn check_name(name: &str) -> anyhow::Result<()> {
    let fine = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !fine {
        bail!(
            "{name:?} cannot name a remote: use letters, digits, '-', '_' and '.', not first \
             '.' or '-'"
        );
    }
    Ok(())
}

/// Characters ostree passes on as they are in a URL's user information (RFC 3986's unreserved
/// and sub-delimiters); a password may also hold ':'.
fn url_safe(text: &str, colon: bool) -> bool {
    text.bytes().all(|b| {
        b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) || (colon && b == b':')
    })
}

/// `user:password` for the URL of a remote.
fn userinfo(credential: &Credential, service: &str) -> anyhow::Result<String> {
    let (user, password) = match credential {
        // The gate takes a license key as the password whatever the user name.
        Credential::LicenseKey(key) => ("license", key.expose()),
        Credential::Password { user, password } => (user.as_str(), password.expose()),
        Credential::Token(_) => bail!(
            "the credential stored for {service} is a download token, which expires: an OS \
             remote needs a license key or an account; store one with `tollgate-helper login \
             {service}`"
        ),
    };
    if user.is_empty() || !url_safe(user, false) || !url_safe(password, true) {
        bail!(
            "the {} stored for {service} has characters an ostree remote's URL cannot carry \
             (ostree sends them percent-encoded, as written, so the service would not know \
             them); only letters, digits and -._~!$&'()*+,;= pass as they are: use a license \
             key, or give the account such a password",
            what(credential)
        );
    }
    Ok(format!("{user}:{password}"))
}

/// `text` quoted for a POSIX shell.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn add(args: &AddArgs) -> anyhow::Result<ExitCode> {
    let path = args.sysroot.file(&args.name)?;
    let url = normalise(&args.url)?;
    let service = match &args.service_url {
        Some(service) => normalise(service)?,
        None => url.clone(),
    };
    let chain = load_chain()?;
    let (found, asked) = chain.lookup(&service, args.interactive);
    for line in failures(&asked) {
        note(&line);
    }
    let Some((provider, credential)) = found else {
        bail!(
            "no provider has a credential for {service}: store one first with `tollgate-helper \
             login {service}` (as the user that runs this)"
        );
    };
    let userinfo = userinfo(&credential, &service)?;
    if !args.no_check {
        let entitled = runtime()?
            .block_on(crate::service::check_credential(
                &crate::service::client()?,
                &service,
                &credential,
            ))
            .map_err(|e| anyhow::anyhow!("nothing written: {}", e.explain(&service)))?;
        note(&describe_entitled(&service, &credential, &entitled));
    }
    let (scheme, rest) = url.split_once("://").context("a URL without a scheme")?;
    let remote_url = zeroize::Zeroizing::new(format!("{scheme}://{userinfo}@{rest}/"));
    if args.print {
        let mut line = "ostree remote add".to_owned();
        if !args.sysroot.is_root() {
            line.push_str(&format!(
                " --sysroot={}",
                shell_quoted(&args.sysroot.sysroot.to_string_lossy())
            ));
        }
        if args.force {
            line.push_str(" --force");
        }
        if args.no_gpg_verify {
            line.push_str(" --no-gpg-verify");
        }
        line.push_str(&format!(" {} {}", args.name, shell_quoted(&remote_url)));
        out(&line);
        note(&format!(
            "that command replaces {} when it exists, keeping its mode; otherwise ostree \
             writes the remote where everyone may read it (/etc/ostree/remotes.d on a booted \
             system, else the repository's config): make that file 0600",
            path.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = zeroize::Zeroizing::new(format!(
        "# Written by `tollgate-helper os-remote add`. ostree keeps no secret but a remote's \
         URL,\n# so this URL carries the {} from {provider}: the file is for root alone (0600).\n\
         [remote \"{}\"]\nurl={}\n",
        what(&credential),
        args.name,
        remote_url.as_str()
    ));
    if args.no_gpg_verify {
        text.push_str("gpg-verify=false\n");
    }
    let folder = path.parent().context("a remote file without a folder")?;
    std::fs::create_dir_all(folder).with_context(|| format!("making {}", folder.display()))?;
    rewrite_locked_by_folder(&path, Mode::Exactly(0o600), || {
        if !args.force && path.exists() {
            bail!(
                "{} exists: add --force to replace it (or pick another name)",
                path.display()
            );
        }
        Ok(text.as_bytes().to_vec())
    })
    .with_context(|| format!("writing {}", path.display()))?;
    out(&format!(
        "wrote {}, mode 0600: the remote {} at {url} carries the {} in its URL (ostree keeps \
         no other secret), so only root may read it; `ostree admin upgrade` now opens its \
         gated refs",
        path.display(),
        args.name,
        what(&credential)
    ));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_api::Secret;

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        for name in ["vendor", "os.stable", "a-b_c"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
        for name in ["", "../etc", "a/b", ".hidden", "-f", "a b", "ä"] {
            assert!(check_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn only_credentials_ostree_sends_as_written_go_in_a_url() {
        let key = Credential::LicenseKey(Secret::new("tg_abc_DEF-123"));
        assert_eq!(userinfo(&key, "s").unwrap(), "license:tg_abc_DEF-123");
        let account = |user: &str, password: &str| Credential::Password {
            user: user.to_owned(),
            password: Secret::new(password),
        };
        assert_eq!(
            userinfo(&account("bob", "a:b!$"), "s").unwrap(),
            "bob:a:b!$"
        );
        for (user, password) in [
            ("bob", "two words"),
            ("bob", "50%off"),
            ("bob", "a@b"),
            ("bob", "a/b"),
            ("bob", "a#b"),
            ("b:ob", "pw9"),
            ("", "pw9"),
        ] {
            let said = userinfo(&account(user, password), "s")
                .unwrap_err()
                .to_string();
            assert!(said.contains("cannot carry"), "{said}");
            assert!(!said.contains(password), "{said}");
        }
        let said = userinfo(&Credential::Token(Secret::new("t")), "s")
            .unwrap_err()
            .to_string();
        assert!(said.contains("download token"), "{said}");
    }

    #[test]
    fn shell_quoting_keeps_quotes() {
        assert_eq!(shell_quoted("a'b"), r"'a'\''b'");
    }
}
