//! The entitlement service as tests meet it: the real `tollgate` serving the gated repository
//! with an admin token, its admin API and token endpoint over real HTTP, and what tests read
//! from its answers (signed tokens, their claims, checked against the published keys).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::fixture::Fixture;
use crate::gated_repo::{APP, GatedRepo};
use crate::http::{self, Response};
use crate::server::Server;

pub const ADMIN_TOKEN: &str = "an admin token for the entitlement tests";

/// A second gated app, which the tests' licenses do not cover.
pub const OTHER_APP: &str = "org.example.Other";
/// The password of the tests' accounts.
pub const PASSWORD: &str = "correct horse battery staple";

/// The fixture's environment with [`ADMIN_TOKEN`] as the admin token.
pub fn with_admin_token(fx: &Fixture) -> Vec<(String, PathBuf)> {
    let admin = ("TOLLGATE_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.into());
    fx.env().iter().cloned().chain([admin]).collect()
}

/// A running service and how to start it again on the same data.
#[derive(Debug)]
pub struct Service {
    args: Vec<String>,
    env: Vec<(String, PathBuf)>,
    pub server: Server,
}

impl Service {
    /// Serves `g` with the admin token in the environment, the database at `database_url`
    /// (the data directory's SQLite when `None`), and `entitlements` as the configuration's
    /// `[entitlements]` section.
    pub fn start(
        fx: &Fixture,
        g: &GatedRepo,
        database_url: Option<&str>,
        entitlements: &str,
    ) -> Service {
        Service::start_on(
            fx,
            &g.repo,
            &g.data,
            "[tokens]\nflat-manager-secret-file = \"flat-manager-secret\"\n",
            database_url,
            entitlements,
        )
    }

    /// Serves `repo` with the data directory `data`, the configuration `config` followed by
    /// the `[entitlements]` section, and the rest as for [`Service::start`].
    pub fn start_on(
        fx: &Fixture,
        repo: &Path,
        data: &Path,
        config: &str,
        database_url: Option<&str>,
        entitlements: &str,
    ) -> Service {
        let config_file = fx.join("entitlements.toml");
        std::fs::write(
            &config_file,
            format!("{config}\n[entitlements]\n{entitlements}\n"),
        )
        .unwrap();
        let mut args: Vec<String> = vec![
            "--repo".into(),
            repo.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--config".into(),
            config_file.display().to_string(),
        ];
        if let Some(url) = database_url {
            args.extend(["--database-url".into(), url.into()]);
        }
        let env = with_admin_token(fx);
        let server = launch(&args, &env);
        Service { args, env, server }
    }

    /// Kills the server with SIGKILL, runs `meanwhile`, and starts it again on the same data.
    pub fn kill_and_restart(self, meanwhile: impl FnOnce()) -> Service {
        let Service { args, env, server } = self;
        // Dropping a server kills it with SIGKILL.
        drop(server);
        meanwhile();
        let server = launch(&args, &env);
        Service { args, env, server }
    }

    /// Stops the server cleanly (SIGTERM) and starts it again on the same data.
    pub fn restart(self) -> Service {
        let Service { args, env, server } = self;
        let status = server.stop();
        assert!(status.success(), "tollgate stopped with {status}");
        let server = launch(&args, &env);
        Service { args, env, server }
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http::json(
            self.server.addr,
            method,
            &format!("/api/v1/admin/{path}"),
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            body.as_ref(),
        )
    }

    /// An admin request that must succeed with `status`; its answer.
    pub fn admin_ok(&self, status: u16, method: &str, path: &str, body: Option<Value>) -> Value {
        let (got, answer) = self.admin(method, path, body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        answer
    }

    pub fn tokens(&self, authorization: Option<&str>, body: &Value) -> (u16, Value) {
        http::json(
            self.server.addr,
            "POST",
            "/api/v1/tokens",
            authorization,
            Some(body),
        )
    }

    /// Everything the admin API shows: products, licenses, accounts and issued tokens.
    pub fn snapshot(&self) -> Value {
        json!([
            self.admin_ok(200, "GET", "products", None),
            self.admin_ok(200, "GET", "licenses", None),
            self.admin_ok(200, "GET", "accounts", None),
            self.admin_ok(200, "GET", "audit/tokens?limit=1000", None),
            self.admin_ok(200, "GET", "audit/downloads?limit=1000", None),
        ])
    }

    /// A snapshot once the audit writer has written everything queued: two in a row alike.
    pub fn settled_snapshot(&self) -> Value {
        let mut last = self.snapshot();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.snapshot();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the stored data keeps changing: {last}");
    }

    /// Waits until the admin API lists at least `n` audit records of `kind` (`tokens` or
    /// `downloads`) matching `query`, and returns them: the audit writer writes in batches, a
    /// moment after the answer.
    pub fn wait_for_audit(&self, kind: &str, query: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.admin_ok(200, "GET", &format!("audit/{kind}?{query}"), None);
            let items = page["items"].as_array().unwrap().clone();
            if items.len() >= n {
                return items;
            }
            assert!(
                Instant::now() < deadline,
                "{n} audit records of {kind} for {query:?}: {page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn launch(args: &[String], env: &[(String, PathBuf)]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::serve(&args, env)
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

pub fn basic(name: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{name}:{password}")))
}

/// The one signed token in an answer, and the refs it is for.
pub fn signed_token(answer: &Value) -> Option<(String, Vec<String>)> {
    let tokens = answer["tokens"].as_object()?;
    let mut signed = tokens.iter().filter(|(token, _)| !token.is_empty());
    let (token, refs) = signed.next()?;
    assert!(signed.next().is_none(), "one signed token: {answer}");
    let refs = refs
        .as_array()?
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    Some((token.clone(), refs))
}

/// A token's claims, read without checking it.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("a kid")
}

/// Checks `token` against the server's published keys, with a real JWK parser.
pub fn verify_with_jwks(server: &Server, token: &str) -> Value {
    let r = http::get(server.addr, "/.well-known/jwks.json");
    assert_eq!(r.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&r.body).unwrap();
    let jwk = set
        .find(&kid(token))
        .unwrap_or_else(|| panic!("the key {} is published", kid(token)));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the token verifies against the JWKS: {e}"))
        .claims
}

pub fn error_type(answer: &Value) -> &str {
    answer["error-type"].as_str().unwrap_or("<none>")
}

/// `GET` a repository file with a token.
pub fn fetch(server: &Server, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(bearer);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http::request(server.addr, "GET", path, &headers)
}

/// A product for the paid app and a license for it; the license key.
pub fn license_for_paid(s: &Service) -> String {
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "paid", "name": "Paid", "refs": [format!("app/{APP}/*")]})),
    );
    let license = s.admin_ok(201, "POST", "licenses", Some(json!({"products": ["paid"]})));
    license["key"].as_str().unwrap().to_owned()
}

/// An account `bob` with the password [`PASSWORD`] and the product `paid` (made by
/// [`license_for_paid`]).
pub fn account_for_paid(s: &Service) {
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": "bob", "password": PASSWORD, "products": ["paid"]})),
    );
}

/// A product `other` (another app's refs) and an account `name` with the password
/// [`PASSWORD`] holding only it: a customer who has not bought `paid`.
pub fn account_holding_other(s: &Service, name: &str) {
    s.admin_ok(
        201,
        "POST",
        "products",
        Some(json!({"slug": "other", "name": "Other", "refs": ["app/org.example.Other/*"]})),
    );
    s.admin_ok(
        201,
        "POST",
        "accounts",
        Some(json!({"name": name, "password": PASSWORD, "products": ["other"]})),
    );
}

/// A signed token for `ask` with the license `key`.
pub fn token_for(s: &Service, key: &str, ask: &Value) -> String {
    let (status, answer) = s.tokens(Some(&bearer(key)), ask);
    assert_eq!(status, 200, "{answer}");
    signed_token(&answer).unwrap().0
}

/// The key ids the server publishes.
pub fn published_kids(s: &Service) -> Vec<String> {
    let r = http::get(s.server.addr, "/.well-known/jwks.json");
    let set: Value = serde_json::from_slice(&r.body).unwrap();
    let mut kids: Vec<String> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

pub fn set_license_active(through: &Service, id: &str, active: bool) {
    let path = format!("licenses/{id}");
    through.admin_ok(200, "PATCH", &path, Some(json!({ "active": active })));
}

/// Deactivates the only license through `through` and checks that `other`, sharing its
/// database, refuses it a new token 100 ms later (what an instance keeps in memory is trusted
/// no longer than 50 ms); the license's id.
pub fn deactivate_and_check_refused(
    through: &Service,
    other: &Service,
    key: &str,
    ask: &Value,
) -> String {
    let id = through.admin_ok(200, "GET", "licenses", None)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    set_license_active(through, &id, false);
    std::thread::sleep(Duration::from_millis(100));
    let (status, answer) = other.tokens(Some(&bearer(key)), ask);
    assert_eq!(
        (status, error_type(&answer)),
        (401, "license-inactive"),
        "{answer}"
    );
    id
}
