//! `tollgate-authenticator`: a Flatpak authenticator on the session bus
//! (`org.freedesktop.Flatpak.Authenticator`, bus name [`BUS_NAME`]), started by D-Bus activation
//! when flatpak needs tokens for a remote whose `xa.authenticator-name` names it.
//!
//! For each `RequestRefTokens` it exports a request object at the path flatpak expects, answers
//! with that path, and then works: the service URL is the `url` authenticator option (else the
//! remote's URL) and the repository the `repo` option. The `url` option comes from the remote's
//! summary, which whoever serves the remote writes, so tokens are given only when the remote's
//! own URL (`remote_uri`) is the service's origin or a mirror the user trusts ([`crate::trust`]);
//! otherwise the request fails, saying how to trust the remote. Tokens come from the cache, else
//! from the entitlement service with the credential the providers have. With none stored (or a stored
//! one refused) and interaction allowed, it signs in through the browser when the service has
//! the web flow ([`crate::webflow`]): `Webflow` with the service's sign-in page, a device
//! credential from the code the browser brings back, stored with the first provider that can
//! store, then `WebflowDone`. Where flatpak opens no browser (it closes the request instead)
//! or the service has no web flow, it asks through flatpak's `BasicAuth` prompt, retries
//! with `previous-error` when the server refuses what was typed, and stores what the server
//! accepted. flatpak waits for an answer without end and aborts on signals out of order, so
//! the web flow ends by itself after [`crate::webflow::DEFAULT_WEBFLOW_SECS`], a `WebflowDone` always comes
//! before the `Response` of a web flow flatpak started, and none after flatpak closed it. The answer is the `Response` signal: 0 with
//! `tokens` (token → refs, `""` for refs that need none), 1 when the user cancelled, 2 with an
//! `error-message` saying what to do. It exits when idle, and when its bus goes away.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tollgate_plugin_api::url::normalise;
use tollgate_plugin_api::{Credential, Secret};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::config::Config;
use crate::service::Want;
use crate::tokens::{Failure, Helper, RefTokens, grouped};
use crate::trust::check;
use crate::webflow::Answer;

/// The authenticator's bus name: what `xa.authenticator-name` says.
pub(crate) const BUS_NAME: &str = "org.tollgate.Authenticator";
/// The object flatpak calls.
pub(crate) const OBJECT_PATH: &str = "/org/freedesktop/Flatpak/Authenticator";
/// Seconds without a request before the authenticator exits (D-Bus starts it again when
/// needed); `TOLLGATE_AUTHENTICATOR_IDLE` overrides it.
pub(crate) const DEFAULT_IDLE_SECS: u64 = 60;
/// How many times one request asks the user before giving up.
const MAX_PROMPTS: usize = 5;

fn log(text: &str) {
    let _ = writeln!(std::io::stderr(), "tollgate-authenticator: {text}");
}

/// Requests in flight and when the last one ended: what the idle timer looks at.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.last.lock().ok().map(|last| last.elapsed())
    }
}

struct Authenticator {
    helper: Helper,
    activity: Arc<Activity>,
}

/// What the user did with a prompt.
#[derive(Debug)]
enum Reply {
    BasicAuth {
        user: String,
        password: zeroize::Zeroizing<String>,
    },
    Close,
}

/// A request object: flatpak calls `Close` and `BasicAuthReply` on it and listens to its
/// signals.
struct RequestObject {
    replies: mpsc::Sender<Reply>,
}

#[zbus::interface(name = "org.freedesktop.Flatpak.AuthenticatorRequest")]
impl RequestObject {
    async fn close(&self) {
        let _ = self.replies.send(Reply::Close).await;
    }

    async fn basic_auth_reply(
        &self,
        user: String,
        password: String,
        _options: HashMap<String, OwnedValue>,
    ) {
        let password = zeroize::Zeroizing::new(password);
        let _ = self.replies.send(Reply::BasicAuth { user, password }).await;
    }

    #[zbus(signal)]
    async fn response(
        emitter: &SignalEmitter<'_>,
        response: u32,
        results: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn basic_auth(
        emitter: &SignalEmitter<'_>,
        realm: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn webflow(
        emitter: &SignalEmitter<'_>,
        uri: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn webflow_done(
        emitter: &SignalEmitter<'_>,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;
}

/// A string option (`a{sv}` value), if it is one.
fn string_option(options: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    options
        .get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
        .filter(|s| !s.is_empty())
}

/// The request object's path flatpak expects: its unique name without `:` and with `.` as `_`,
/// then the handle token.
pub(crate) fn request_path(sender: &str, handle_token: &str) -> Option<String> {
    let caller = sender.trim_start_matches(':').replace('.', "_");
    let element_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (element_ok(&caller) && element_ok(handle_token))
        .then(|| format!("{OBJECT_PATH}/request/{caller}/{handle_token}"))
}

#[zbus::interface(name = "org.freedesktop.Flatpak.Authenticator")]
impl Authenticator {
    #[zbus(property, name = "version")]
    fn version(&self) -> u32 {
        1
    }

    #[allow(clippy::too_many_arguments)]
    async fn request_ref_tokens(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        handle_token: &str,
        authenticator_options: HashMap<String, OwnedValue>,
        remote: &str,
        remote_uri: &str,
        refs: Vec<(String, String, i32, HashMap<String, OwnedValue>)>,
        options: HashMap<String, OwnedValue>,
        _parent_window: &str,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let sender = header
            .sender()
            .map(|s| s.to_string())
            .ok_or_else(|| zbus::fdo::Error::Failed("the call has no sender".to_owned()))?;
        let path = request_path(&sender, handle_token).ok_or_else(|| {
            zbus::fdo::Error::InvalidArgs(format!(
                "the handle token {handle_token:?} cannot be part of an object path"
            ))
        })?;
        let (replies, receiver) = mpsc::channel(4);
        connection
            .object_server()
            .at(path.as_str(), RequestObject { replies })
            .await?;
        // `auth-server-url`, the name the entitlement-server proposal for flatpak gave it;
        // remotes set up before it carry `url`.
        let service_url = ["auth-server-url", "url"]
            .iter()
            .find_map(|key| string_option(&authenticator_options, key))
            .unwrap_or_else(|| remote_uri.to_owned());
        let work = Work {
            remote: remote.to_owned(),
            remote_url: remote_uri.to_owned(),
            url: service_url,
            repo: string_option(&authenticator_options, "repo").unwrap_or_default(),
            refs: refs.into_iter().map(|(r, ..)| r).collect(),
            interactive: !options
                .get("no-interaction")
                .and_then(|v| bool::try_from(v.clone()).ok())
                .unwrap_or(false),
        };
        self.activity.begin();
        let (helper, activity, connection) = (
            self.helper.clone(),
            Arc::clone(&self.activity),
            connection.clone(),
        );
        let answer_path = path.clone();
        tokio::spawn(async move {
            answer(&helper, &connection, &answer_path, work, receiver).await;
            activity.end();
        });
        OwnedObjectPath::try_from(path).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }
}

/// One `RequestRefTokens`, as the work needs it.
#[derive(Debug)]
struct Work {
    remote: String,
    /// Where flatpak will send the tokens: the remote's own URL.
    remote_url: String,
    /// The entitlement service's URL.
    url: String,
    repo: String,
    refs: Vec<String>,
    interactive: bool,
}

/// How a request ended.
enum Outcome {
    Tokens(RefTokens),
    Cancelled,
    Failed(String),
}

/// Works out the answer to one request, sends it as `Response`, and removes the request object.
async fn answer(
    helper: &Helper,
    connection: &zbus::Connection,
    path: &str,
    work: Work,
    mut replies: mpsc::Receiver<Reply>,
) {
    let emitter = match SignalEmitter::new(connection, path.to_owned()) {
        Ok(emitter) => emitter,
        Err(e) => {
            log(&format!("cannot answer on {path}: {e}"));
            return;
        }
    };
    let outcome = work_out(helper, &emitter, &work, &mut replies).await;
    let sent = match outcome {
        Outcome::Tokens(tokens) => {
            let tokens: HashMap<String, Vec<String>> = grouped(&tokens).into_iter().collect();
            let results = HashMap::from([("tokens", Value::from(tokens))]);
            RequestObject::response(&emitter, 0, results).await
        }
        Outcome::Cancelled => RequestObject::response(&emitter, 1, HashMap::new()).await,
        Outcome::Failed(message) => {
            log(&format!("remote {}: {message}", work.remote));
            let results = HashMap::from([
                ("error-message", Value::from(message)),
                ("error-code", Value::from(-1i32)),
            ]);
            RequestObject::response(&emitter, 2, results).await
        }
    };
    if let Err(e) = sent {
        log(&format!("cannot send the answer on {path}: {e}"));
    }
    let _ = connection
        .object_server()
        .remove::<RequestObject, _>(path)
        .await;
}

/// A credential from what the user typed at flatpak's prompt: a license key as the password
/// (whatever the name), else an account's name and password.
fn typed_credential(user: &str, password: &str) -> Result<Credential, String> {
    let password = password.trim();
    if password.starts_with("tg_") {
        return Ok(Credential::LicenseKey(Secret::new(password)));
    }
    if user.trim().is_empty() || password.is_empty() {
        return Err(
            "enter your license key (tg_...) as the password, or your account's name and password"
                .to_owned(),
        );
    }
    Ok(Credential::Password {
        user: user.trim().to_owned(),
        password: Secret::new(password),
    })
}

async fn work_out(
    helper: &Helper,
    emitter: &SignalEmitter<'_>,
    work: &Work,
    replies: &mut mpsc::Receiver<Reply>,
) -> Outcome {
    let url = match normalise(&work.url) {
        Ok(url) => url,
        Err(e) => {
            return Outcome::Failed(format!(
                "the remote {}'s entitlement service URL is not usable: {e}; fix the \
                 repository's xa.authenticator-options.auth-server-url",
                work.remote
            ));
        }
    };
    // Before anything else, the cached tokens and the prompt included: a look-alike remote
    // must get neither a token nor a chance to ask for the user's key.
    let trusted = match Config::read() {
        Ok(config) => config.trusted_mirrors,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    if let Err(refused) = check(&work.remote_url, &url, &trusted) {
        return Outcome::Failed(refused.to_string());
    }
    let want = Want {
        url: url.clone(),
        repo: work.repo.clone(),
        refs: work.refs.clone(),
    };
    if let Some(tokens) = helper.cached(&want) {
        return Outcome::Tokens(tokens);
    }
    let (found, asked) = helper.stored_credential(&url, work.interactive).await;
    let mut previous_error = None;
    match found {
        Some((provider, credential)) => {
            match issue_or_buy(helper, emitter, work, &want, &credential, replies).await {
                Ok(tokens) => return Outcome::Tokens(tokens),
                Err(Failure::Service { error, .. })
                    if error.is_bad_credential() && work.interactive =>
                {
                    previous_error = Some(format!(
                        "The credential stored in {provider} was refused; enter the right one."
                    ));
                }
                Err(failure) => return Outcome::Failed(failure.explain()),
            }
        }
        None if !work.interactive => {
            return Outcome::Failed(format!(
                "{} (not asking, since flatpak runs without interaction)",
                Failure::NoCredential { url, asked }.explain()
            ));
        }
        None => {}
    }
    match web_sign_in(helper, emitter, work, &url, replies).await {
        Web::Credential(credential) => {
            return match issue_or_buy(helper, emitter, work, &want, &credential, replies).await {
                Ok(tokens) => Outcome::Tokens(tokens),
                Err(failure) => Outcome::Failed(failure.explain()),
            };
        }
        Web::Cancelled => return Outcome::Cancelled,
        Web::Failed(message) => return Outcome::Failed(message),
        Web::NotHere => {}
    }
    let realm = format!(
        "{url}: enter your license key as the password (any user name), or your account's name \
         and password"
    );
    for _ in 0..MAX_PROMPTS {
        let mut options = HashMap::new();
        if let Some(error) = &previous_error {
            options.insert("previous-error", Value::from(error.as_str()));
        }
        if let Err(e) = RequestObject::basic_auth(emitter, &realm, options).await {
            return Outcome::Failed(format!("cannot ask for a credential: {e}"));
        }
        let (user, password) = match replies.recv().await {
            Some(Reply::BasicAuth { user, password }) => (user, password),
            Some(Reply::Close) | None => return Outcome::Cancelled,
        };
        let credential = match typed_credential(&user, &password) {
            Ok(credential) => credential,
            Err(e) => {
                previous_error = Some(e);
                continue;
            }
        };
        match issue_or_buy(helper, emitter, work, &want, &credential, replies).await {
            Ok(tokens) => {
                match helper.store_credential(&url, credential, true).await {
                    Ok(provider) => {
                        log(&format!("stored the credential for {url} with {provider}"))
                    }
                    Err(why) => log(&format!(
                        "could not store the credential for {url}: {}",
                        why.join("; ")
                    )),
                }
                return Outcome::Tokens(tokens);
            }
            Err(Failure::Service { error, .. }) if error.is_bad_credential() => {
                previous_error = Some(format!(
                    "{url} did not accept that license key, or that account name and password; \
                     check it and enter it again."
                ));
            }
            Err(failure) => return Outcome::Failed(failure.explain()),
        }
    }
    Outcome::Failed(format!(
        "{url} refused {MAX_PROMPTS} credentials in a row; check your license key"
    ))
}

/// How a sign-in in the browser ended.
enum Web {
    /// Signed in: the device credential (stored, if a provider could).
    Credential(Credential),
    /// No web flow: the service has none, or flatpak opened no browser (and closed the
    /// request): ask at the prompt instead.
    NotHere,
    Cancelled,
    Failed(String),
}

/// Signs in through the browser, if the service has the web flow.
async fn web_sign_in(
    helper: &Helper,
    emitter: &SignalEmitter<'_>,
    work: &Work,
    url: &str,
    replies: &mut mpsc::Receiver<Reply>,
) -> Web {
    let Some(ends) = crate::webflow::discover(&helper.client, url).await else {
        return Web::NotHere;
    };
    let flow = match crate::webflow::Flow::start(url).await {
        Ok(flow) => flow,
        Err(e) => {
            log(&format!("no web sign-in: {e:#}"));
            return Web::NotHere;
        }
    };
    let detail = format!("remote {}", work.remote);
    let page = flow.page(
        &ends,
        &crate::webflow::device_name("flatpak", Some(&detail)),
    );
    let code = match browse(emitter, &flow, &page, replies).await {
        Browsed::Closed => return Web::NotHere,
        Browsed::Failed(message) => return Web::Failed(message),
        Browsed::Done(Answer::Code(code)) => code,
        Browsed::Done(Answer::Denied) => return Web::Cancelled,
        Browsed::Done(Answer::Back) => {
            return Web::Failed(format!(
                "{url}'s sign-in page came back without signing in; run the command again"
            ));
        }
        Browsed::Done(Answer::Refused(why)) => return Web::Failed(why),
    };
    let credential = match flow.exchange(&helper.client, &ends, &code).await {
        Ok(credential) => credential,
        Err(why) => return Web::Failed(why),
    };
    match helper.store_credential(url, credential.clone(), true).await {
        Ok(provider) => log(&format!(
            "signed in {url} as a device; stored with {provider}"
        )),
        Err(why) => log(&format!(
            "signed in {url} as a device, but could not store its credential: {}",
            why.join("; ")
        )),
    }
    Web::Credential(credential)
}

/// How a page opened through flatpak ended.
enum Browsed {
    /// flatpak opened no browser, or the person closed it: no `WebflowDone` was sent.
    Closed,
    /// It came back (`WebflowDone` sent).
    Done(Answer),
    /// It could not be opened, or did not come back in time (`WebflowDone` sent if flatpak
    /// had it open).
    Failed(String),
}

/// Has flatpak open `page` (`Webflow`), and waits for the browser to come back to `flow`'s
/// port, flatpak to close the request, or the time to run out; `WebflowDone` once it is over,
/// unless flatpak closed it (it would abort on one then).
async fn browse(
    emitter: &SignalEmitter<'_>,
    flow: &crate::webflow::Flow,
    page: &str,
    replies: &mut mpsc::Receiver<Reply>,
) -> Browsed {
    if let Err(e) = RequestObject::webflow(emitter, page, HashMap::new()).await {
        return Browsed::Failed(format!("cannot ask flatpak to open the browser: {e}"));
    }
    let limit = crate::webflow::limit();
    let deadline = tokio::time::Instant::now() + limit;
    let answer = loop {
        tokio::select! {
            // flatpak's Close first: after it, a WebflowDone would make flatpak abort.
            biased;
            reply = replies.recv() => match reply {
                Some(Reply::Close) | None => return Browsed::Closed,
                Some(Reply::BasicAuth { .. }) => continue,
            },
            answer = flow.answer() => break Some(answer),
            () = tokio::time::sleep_until(deadline) => break None,
        }
    };
    // A Close that came while the answer did.
    while let Ok(reply) = replies.try_recv() {
        if matches!(reply, Reply::Close) {
            return Browsed::Closed;
        }
    }
    if let Err(e) = RequestObject::webflow_done(emitter, HashMap::new()).await {
        log(&format!("cannot tell flatpak the browser is done: {e}"));
    }
    match answer {
        Some(answer) => Browsed::Done(answer),
        None => Browsed::Failed(format!(
            "the page in the browser was not finished within {} seconds; run the command again",
            limit.as_secs()
        )),
    }
}

/// Tokens for `want` with `credential`. Where refs are denied that a product on sale covers
/// and a person is there, the service's buy page first (through the browser), then again; a
/// purchase not made leaves the first answer, which says where to buy.
async fn issue_or_buy(
    helper: &Helper,
    emitter: &SignalEmitter<'_>,
    work: &Work,
    want: &Want,
    credential: &Credential,
    replies: &mut mpsc::Receiver<Reply>,
) -> Result<RefTokens, Failure> {
    let first = helper.issue(want, credential).await;
    let Err(Failure::Denied { for_sale, .. }) = &first else {
        return first;
    };
    let Some(slug) = for_sale.values().next().filter(|_| work.interactive) else {
        return first;
    };
    let flow = match crate::webflow::Flow::start(&want.url).await {
        Ok(flow) => flow,
        Err(e) => {
            log(&format!("cannot offer the buy page: {e:#}"));
            return first;
        }
    };
    let page = flow.buy_page(&want.url, slug);
    match browse(emitter, &flow, &page, replies).await {
        Browsed::Done(Answer::Back) => helper.issue(want, credential).await,
        Browsed::Failed(message) => {
            log(&message);
            first
        }
        Browsed::Closed | Browsed::Done(_) => first,
    }
}

/// Seconds idle before exiting.
fn idle_limit() -> Duration {
    let secs = std::env::var("TOLLGATE_AUTHENTICATOR_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_IDLE_SECS);
    Duration::from_secs(secs)
}

async fn serve() -> anyhow::Result<()> {
    let helper = Helper::load()?;
    for refused in &helper.chain.refused {
        log(&format!(
            "provider {} refused: {}",
            refused.path.display(),
            refused.reason
        ));
    }
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: std::sync::Mutex::new(Instant::now()),
    });
    let connection = zbus::connection::Builder::session()?
        .serve_at(
            OBJECT_PATH,
            Authenticator {
                helper,
                activity: Arc::clone(&activity),
            },
        )?
        .name(BUS_NAME)?
        .build()
        .await?;
    let limit = idle_limit();
    let mut messages = zbus::MessageStream::from(connection.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = messages.next() => {
                if message.is_none() {
                    log("the session bus went away; exiting");
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                if activity.idle_for().is_some_and(|idle| idle >= limit) {
                    return Ok(());
                }
            }
        }
    }
}

pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_follow_flatpaks_convention() {
        assert_eq!(
            request_path(":1.42", "3").as_deref(),
            Some("/org/freedesktop/Flatpak/Authenticator/request/1_42/3")
        );
        assert_eq!(request_path(":1.42", "a/b"), None);
        assert_eq!(request_path(":1.42", ""), None);
    }

    #[test]
    fn typed_keys_and_accounts() {
        assert_eq!(
            typed_credential("anything", " tg_abc_def ").unwrap(),
            Credential::LicenseKey(Secret::new("tg_abc_def"))
        );
        assert_eq!(
            typed_credential("alice", "pw").unwrap().user(),
            Some("alice")
        );
        assert!(typed_credential("", "pw").is_err());
        assert!(typed_credential("alice", "").is_err());
    }
}
