//! A real `gnome-keyring-daemon` on a test's private session bus, and a stand-in for the person
//! at its unlock prompt.
//!
//! The keyring is the real one: it keeps the real login collection under the test's HOME, locks
//! and unlocks it, and checks the password typed at its prompt. Only the prompt window is
//! replaced: with a display, gnome-keyring asks `gcr-prompter` (bus name
//! `org.gnome.keyring.SystemPrompter`) to show a dialog; there is no display here, so
//! [`StandInPrompter`] takes that bus name and answers the dialog the way a person would, typing
//! a password (or pressing Cancel). It speaks gcr's private prompter protocol
//! (`org.gnome.keyring.internal.Prompter`), including its secret exchange: the password travels
//! AES-128-CBC encrypted under a key agreed with Diffie-Hellman, as gcr-prompter sends it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use crate::bus::SessionBus;
use crate::cmd::require_tool;
use crate::fixture::Fixture;

/// The login collection, which `gnome-keyring-daemon --unlock` creates and unlocks.
pub const LOGIN_COLLECTION: &str = "/org/freedesktop/secrets/collection/login";

/// A running `gnome-keyring-daemon` with its secrets component, its login collection unlocked
/// with a password; stopped when dropped.
#[derive(Debug)]
pub struct Keyring {
    child: Child,
    bus: zbus::blocking::Connection,
}

impl Keyring {
    /// Starts the daemon on `bus` and unlocks (or creates) the login collection with `password`.
    pub fn start(fx: &Fixture, bus: &SessionBus, password: &str) -> Keyring {
        require_tool("gnome-keyring-daemon", "gnome-keyring");
        let mut command = Command::new("gnome-keyring-daemon");
        command
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in fx.env().iter().chain([&bus.env()]) {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("starting gnome-keyring-daemon");
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(password.as_bytes())
            .expect("giving gnome-keyring-daemon its password");
        drop(stdin);
        // It prints its environment variables once it is serving.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading gnome-keyring-daemon's output");
        let connection = zbus::blocking::connection::Builder::address(bus.address())
            .and_then(|b| b.build())
            .expect("connecting to the test's bus");
        let keyring = Keyring {
            child,
            bus: connection,
        };
        // Ready once the collection answers; it normally is at once.
        for _ in 0..100 {
            if keyring.locked().is_some() {
                return keyring;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "gnome-keyring-daemon did not serve {LOGIN_COLLECTION} within 5 s (printed {line:?})"
        );
    }

    /// Whether the login collection is locked, or `None` if it cannot be asked.
    pub fn locked(&self) -> Option<bool> {
        let reply = self
            .bus
            .call_method(
                Some("org.freedesktop.secrets"),
                LOGIN_COLLECTION,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.Secret.Collection", "Locked"),
            )
            .ok()?;
        let value: OwnedValue = reply.body().deserialize().ok()?;
        bool::try_from(value).ok()
    }

    /// Locks the login collection, as the screen locker or a timeout would.
    pub fn lock(&self) {
        let collections = vec![ObjectPath::try_from(LOGIN_COLLECTION).expect("a valid path")];
        self.bus
            .call_method(
                Some("org.freedesktop.secrets"),
                "/org/freedesktop/secrets",
                Some("org.freedesktop.Secret.Service"),
                "Lock",
                &(collections,),
            )
            .expect("locking the login collection");
        assert_eq!(
            self.locked(),
            Some(true),
            "the login collection did not lock"
        );
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the person at the prompt does.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Types this password and presses Unlock.
    Password(String),
    /// Presses Cancel.
    Cancel,
}

/// A stand-in for the person at gnome-keyring's prompts: owns
/// `org.gnome.keyring.SystemPrompter` on the bus and answers every prompt with [`Answer`].
#[derive(Debug)]
pub struct StandInPrompter {
    _connection: zbus::blocking::Connection,
    answer: Arc<Mutex<Answer>>,
    shown: Arc<Mutex<Vec<String>>>,
}

impl StandInPrompter {
    pub fn start(bus: &SessionBus, answer: Answer) -> StandInPrompter {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let prompter = Prompter {
            answer: Arc::clone(&answer),
            shown: Arc::clone(&shown),
        };
        let connection = zbus::blocking::connection::Builder::address(bus.address())
            .and_then(|b| b.name("org.gnome.keyring.SystemPrompter"))
            .and_then(|b| b.serve_at("/org/gnome/keyring/Prompter", prompter))
            .and_then(|b| b.build())
            .expect("serving the stand-in prompter on the test's bus");
        StandInPrompter {
            _connection: connection,
            answer,
            shown,
        }
    }

    /// What the person does at the next prompts.
    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("not poisoned") = answer;
    }

    /// The prompts shown so far: each one's type and the keyring's description of it.
    pub fn shown(&self) -> Vec<String> {
        self.shown.lock().expect("not poisoned").clone()
    }
}

struct Prompter {
    answer: Arc<Mutex<Answer>>,
    shown: Arc<Mutex<Vec<String>>>,
}

/// Our half of gcr's secret exchange ("sx-aes-1"). We publish the Diffie-Hellman public value
/// 1, so the shared secret the keyring computes (1 to the power of its private value) is 1 and
/// the key is HKDF-SHA256 of that: a weak exchange, fine for a test's password, and still the
/// exact encoding and cipher gcr-prompter uses.
const OUR_PUBLIC: &[u8] = &[1];

fn exchange_key() -> [u8; 16] {
    use aws_lc_rs::hkdf;
    struct Len16;
    impl hkdf::KeyType for Len16 {
        fn len(&self) -> usize {
            16
        }
    }
    let mut key = [0u8; 16];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(OUR_PUBLIC)
        .expand(&[&[]], Len16)
        .and_then(|okm| okm.fill(&mut key))
        .expect("HKDF of 16 bytes");
    key
}

fn exchange(secret: Option<&str>) -> String {
    let mut text = format!("[sx-aes-1]\npublic={}\n", BASE64.encode(OUR_PUBLIC));
    if let Some(secret) = secret {
        use aws_lc_rs::cipher::{AES_128, PaddedBlockEncryptingKey, UnboundCipherKey};
        let key = UnboundCipherKey::new(&AES_128, &exchange_key()).expect("an AES-128 key");
        let key = PaddedBlockEncryptingKey::cbc_pkcs7(key).expect("AES-128-CBC");
        let mut data = secret.as_bytes().to_vec();
        let context = key.encrypt(&mut data).expect("encrypting the password");
        let iv: &[u8] = (&context).try_into().expect("an IV");
        text.push_str(&format!(
            "secret={}\niv={}\n",
            BASE64.encode(&data),
            BASE64.encode(iv)
        ));
    }
    text
}

/// Calls the keyring's callback object once the method that prompted it has been answered.
fn call_back(
    connection: &zbus::Connection,
    header: &Header<'_>,
    callback: &ObjectPath<'_>,
    method: &'static str,
    reply: Option<(&'static str, bool, String)>,
) {
    let connection = zbus::blocking::Connection::from(connection.clone());
    let caller = header.sender().map(|s| s.to_string()).unwrap_or_default();
    let callback = OwnedObjectPath::from(callback.to_owned());
    std::thread::spawn(move || {
        // gcr expects the method's reply before the callback; the reply goes out as soon as
        // the handler returns.
        std::thread::sleep(Duration::from_millis(20));
        let interface = Some("org.gnome.keyring.internal.Prompter.Callback");
        let _ = match reply {
            Some((reply, chosen, exchange)) => {
                let mut properties: HashMap<&str, Value<'_>> = HashMap::new();
                if !reply.is_empty() {
                    properties.insert("choice-chosen", Value::from(chosen));
                }
                connection.call_method(
                    Some(caller.as_str()),
                    &callback,
                    interface,
                    method,
                    &(reply, properties, exchange.as_str()),
                )
            }
            None => {
                connection.call_method(Some(caller.as_str()), &callback, interface, method, &())
            }
        };
    });
}

#[zbus::interface(name = "org.gnome.keyring.internal.Prompter")]
impl Prompter {
    fn begin_prompting(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        callback: ObjectPath<'_>,
    ) {
        call_back(
            connection,
            &header,
            &callback,
            "PromptReady",
            Some(("", false, exchange(None))),
        );
    }

    fn perform_prompt(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        callback: ObjectPath<'_>,
        kind: &str,
        properties: HashMap<String, OwnedValue>,
        _exchange: &str,
    ) {
        let text = |name: &str| {
            properties
                .get(name)
                .and_then(|v| String::try_from(v.clone()).ok())
                .unwrap_or_default()
        };
        self.shown.lock().expect("not poisoned").push(format!(
            "{kind}: {} {}",
            text("message"),
            text("description")
        ));
        let answer = match (&*self.answer.lock().expect("not poisoned"), kind) {
            (Answer::Cancel, _) => ("no", false, exchange(None)),
            (Answer::Password(password), "password") => ("yes", false, exchange(Some(password))),
            (Answer::Password(_), _) => ("yes", false, exchange(None)),
        };
        call_back(connection, &header, &callback, "PromptReady", Some(answer));
    }

    fn stop_prompting(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        callback: ObjectPath<'_>,
    ) {
        call_back(connection, &header, &callback, "PromptDone", None);
    }
}
