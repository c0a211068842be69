//! For the provider tests: load one provider library with the helper's own loader and make one
//! call, printing the answer as JSON, secret included, so a test can check exactly what a
//! provider found. `tollgate-helper` never prints a secret; this tool exists so that it need not.
//!
//! ```text
//! tollgate-provider-probe LIBRARY lookup URL [--interactive]
//! tollgate-provider-probe LIBRARY store URL --kind KIND [--user NAME] --secret SECRET
//! tollgate-provider-probe LIBRARY erase URL
//! ```
//! Prints `{"ok": ...}` or `{"error": KIND, "message": ...}`; exits 2 if the library is refused.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tollgate_plugin_api::host::{self, CallError};
use tollgate_plugin_api::{Credential, Kind, Request, Secret};

#[derive(Parser)]
struct Cli {
    library: PathBuf,
    /// lookup, store or erase.
    call: String,
    url: String,
    #[arg(long)]
    interactive: bool,
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    secret: Option<String>,
    /// Seconds the call may take.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

fn answer(result: Result<serde_json::Value, CallError>) -> serde_json::Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(CallError::Provider(e)) => json!({ "error": e.kind.name(), "message": e.message }),
        Err(e) => json!({ "error": "call", "message": e.to_string() }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let provider = match host::load(&cli.library) {
        Ok(provider) => provider,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{}: {e}", cli.library.display());
            return ExitCode::from(2);
        }
    };
    let request = Request {
        url: cli.url.clone(),
        interactive: cli.interactive,
    };
    let limit = Duration::from_secs(cli.timeout);
    let value = match cli.call.as_str() {
        "lookup" => answer(provider.lookup(&request, limit).map(
            |c| json!({ "kind": c.kind().name(), "user": c.user(), "secret": c.secret().expose() }),
        )),
        "store" => {
            let secret = Secret::new(cli.secret.unwrap_or_default());
            let credential = match cli.kind.as_deref().and_then(Kind::from_name) {
                Some(Kind::LicenseKey) => Credential::LicenseKey(secret),
                Some(Kind::Token) => Credential::Token(secret),
                Some(Kind::Password) => Credential::Password {
                    user: cli.user.unwrap_or_default(),
                    password: secret,
                },
                None => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "--kind must be license-key, password or token"
                    );
                    return ExitCode::from(2);
                }
            };
            answer(
                provider
                    .store(&request, &credential, limit)
                    .map(|()| json!(true)),
            )
        }
        "erase" => answer(provider.erase(&request, limit).map(|()| json!(true))),
        other => {
            let _ = writeln!(std::io::stderr(), "unknown call {other:?}");
            return ExitCode::from(2);
        }
    };
    let _ = writeln!(std::io::stdout(), "{value}");
    ExitCode::SUCCESS
}
