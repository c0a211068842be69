//! `tollgate-helper login URL`: keep a credential with a provider, checked with the service
//! first unless `--no-check`; with `--browser`, a device credential got by signing in through
//! the browser (the web flow, as the authenticator does it for flatpak).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, Secret};

use super::{load_chain, note, out, runtime, what};
use crate::chain::failures;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").args(["key_stdin", "token_stdin", "password_stdin", "browser"])))]
pub(super) struct LoginArgs {
    url: String,
    /// A license key (tg_...), read from stdin.
    #[arg(long)]
    key_stdin: bool,
    /// A bearer token, read from stdin.
    #[arg(long)]
    token_stdin: bool,
    /// An account's password, read from stdin (with --user).
    #[arg(long, requires = "user")]
    password_stdin: bool,
    /// The account's name (its password is asked for, or read from stdin with
    /// --password-stdin). Without --user or a --*-stdin option, the license key is asked for.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Store with this provider only.
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,
    /// Let providers ask the user, e.g. to unlock a keyring.
    #[arg(long)]
    interactive: bool,
    /// Sign in through the browser: prints the service's sign-in page (and opens it with
    /// $BROWSER, if set), waits for the browser to come back, and stores the device credential
    /// the service gives for this computer (revocable in its portal).
    #[arg(long, conflicts_with = "user")]
    browser: bool,
    /// Store the credential without first asking the entitlement service whether it is right
    /// (for when it cannot be reached now).
    #[arg(long)]
    no_check: bool,
}

/// The first line of stdin, without its line end.
fn read_secret(what: &str) -> anyhow::Result<Secret> {
    // Room for all that is read, so the buffer never moves (leaving a copy behind); wiped
    // when dropped.
    const MAX: usize = 16 * 1024;
    let mut text = zeroize::Zeroizing::new(String::with_capacity(MAX + 1024));
    std::io::stdin()
        .take(MAX as u64)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let line = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if line.is_empty() {
        bail!(
            "no {what} on stdin: pipe it in, e.g. `printf '%s\\n' \"$SECRET\" | tollgate-helper login ...`"
        );
    }
    Ok(Secret::new(line))
}

/// Asks at the terminal, without echo.
fn ask_secret(prompt: &str) -> anyhow::Result<Secret> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        bail!(
            "not at a terminal, so nothing can be asked: pipe the secret in with --key-stdin \
             (or --user NAME --password-stdin, or --token-stdin)"
        );
    }
    let typed = zeroize::Zeroizing::new(
        rpassword::prompt_password(prompt).context("reading from the terminal")?,
    );
    // Only the line end is not part of it (rpassword drops it): spaces may be.
    let typed = typed.trim_end_matches(['\r', '\n']);
    if typed.is_empty() {
        bail!("nothing was typed; nothing is stored");
    }
    Ok(Secret::new(typed))
}

pub(super) fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let url = normalise(&args.url)?;
    let credential = if args.browser {
        runtime()?.block_on(sign_in_in_browser(&url))?
    } else if args.key_stdin {
        Credential::LicenseKey(read_secret("license key")?)
    } else if args.token_stdin {
        Credential::Token(read_secret("token")?)
    } else if args.password_stdin {
        let user = args.user.clone().unwrap_or_default();
        Credential::Password {
            user,
            password: read_secret("password")?,
        }
    } else if let Some(user) = &args.user {
        Credential::Password {
            user: user.clone(),
            password: ask_secret(&format!("Password of {user} at {url}: "))?,
        }
    } else {
        Credential::LicenseKey(ask_secret(&format!("License key for {url}: "))?)
    };
    let chain = load_chain()?;
    if let Some(name) = &args.provider
        && !chain.providers.iter().any(|p| p.name == *name)
    {
        bail!("no provider named {name:?} (`tollgate-helper providers` lists them)");
    }
    // A token is for the repository server, not the entitlement service: nothing to ask.
    if !args.no_check && !matches!(credential, Credential::Token(_)) {
        let checked = runtime()?.block_on(crate::service::check_credential(
            &crate::service::client()?,
            &url,
            &credential,
        ));
        match checked {
            Ok(entitled) => out(&describe_entitled(&url, &credential, &entitled)),
            Err(
                e @ (crate::service::ServiceError::Unreachable(_)
                | crate::service::ServiceError::Refused { status: 404, .. }),
            ) => bail!(
                "not stored: {}; to store it anyway, unchecked, add --no-check",
                e.explain(&url)
            ),
            Err(e) => bail!("not stored: {}", e.explain(&url)),
        }
    }
    let (stored, asked) = chain.store(
        &url,
        &credential,
        args.interactive,
        args.provider.as_deref(),
    );
    for line in failures(&asked) {
        note(&line);
    }
    match stored {
        Some(provider) => {
            if let Err(e) = crate::known::remember(&url) {
                note(&format!(
                    "could not add {url} to the services `status` lists: {e}"
                ));
            }
            out(&format!(
                "stored the {} for {url} with {provider}",
                what(&credential)
            ));
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no provider stored the credential for {url}{}",
            if asked.is_empty() {
                ": none can store"
            } else {
                ""
            }
        ),
    }
}

/// The web flow from the command line: the page printed (and opened with `$BROWSER`), the
/// answer awaited on a loopback port, the code exchanged for a device credential.
async fn sign_in_in_browser(url: &str) -> anyhow::Result<Credential> {
    use crate::webflow::{Answer, Flow, device_name, discover, limit};
    let client = crate::service::client()?;
    let Some(ends) = discover(&client, url).await else {
        bail!(
            "{url} offers no sign-in in the browser (or cannot be reached): store a license key \
             with --key-stdin, or an account with --user NAME"
        );
    };
    let flow = Flow::start(url).await?;
    let page = flow.page(&ends, &device_name("tollgate-helper", None));
    let limit = limit();
    note(&format!(
        "open this page in a browser to sign in (waiting {} minutes):\n  {page}",
        limit.as_secs().div_ceil(60)
    ));
    if let Some(browser) = std::env::var_os("BROWSER")
        && let Err(e) = std::process::Command::new(&browser).arg(&page).spawn()
    {
        note(&format!(
            "could not start the browser {}: {e}",
            browser.to_string_lossy()
        ));
    }
    let answer = tokio::time::timeout(limit, flow.answer())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "nobody signed in within {} seconds; nothing is stored",
                limit.as_secs()
            )
        })?;
    match answer {
        Answer::Code(code) => flow
            .exchange(&client, &ends, &code)
            .await
            .map_err(|why| anyhow::anyhow!("not stored: {why}")),
        Answer::Denied => bail!("cancelled in the browser; nothing is stored"),
        Answer::Back => bail!("{url}'s page came back without signing in; nothing is stored"),
        Answer::Refused(why) => bail!("not stored: {why}"),
    }
}

/// What the service said a credential opens, for the person logging in.
pub(super) fn describe_entitled(
    url: &str,
    credential: &Credential,
    entitled: &crate::service::Entitled,
) -> String {
    let mut text = format!("{url} accepts the {}", what(credential));
    match entitled.expires {
        Some(at) => {
            let at =
                // RFC 3339 ends with year 9999; a later expiry is as good as none.
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(at.clamp(0, 253_402_300_799).unsigned_abs());
            text.push_str(&format!(
                ", valid until {}",
                humantime::format_rfc3339_seconds(at)
            ));
        }
        None => text.push_str(", valid without end"),
    }
    if entitled.products.is_empty() {
        text.push_str("; it includes no product yet");
    }
    for p in &entitled.products {
        text.push_str(&format!(
            "\n  {} ({}): {}{}",
            p.name,
            p.slug,
            p.refs.join(", "),
            if p.active { "" } else { " [withdrawn]" }
        ));
    }
    text
}
