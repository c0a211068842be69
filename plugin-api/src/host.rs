//! The host side: load a provider library, check its descriptor, and call it with a time limit.
//!
//! A library is loaded once and never unloaded (unloading a Rust library with thread-local
//! destructors crashes; and a provider call abandoned after its time limit may still be running
//! its code). Everything a provider returns is checked and copied into Rust values before the
//! provider frees it: a null where a string must be, a string that is not UTF-8 or a credential
//! of an unknown kind is an error naming the provider, never undefined behaviour in the host.
//!
//! Calls run on a thread of their own, one at a time per provider. A call that outlives its time
//! limit is abandoned; the provider is then considered hung and is not called again, since its
//! one-call-at-a-time guarantee would otherwise break.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::abi::{self, Descriptor, DescriptorHeader, EntryFn, RawCredential, RawRequest};
use crate::credential::{
    Capabilities, Credential, ErrorKind, Kind, ProviderError, Request, Secret,
};

/// Why a library is not used as a provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot be loaded: {0}")]
    Load(String),
    #[error(
        "has no `{}` symbol, so it is not a tollgate provider",
        abi::ENTRY_SYMBOL
    )]
    NoEntry,
    #[error("its `{}` returned no descriptor", abi::ENTRY_SYMBOL)]
    NullDescriptor,
    #[error(
        "is built for provider ABI {major}.{minor}, and this helper speaks ABI {}.{}: rebuild \
         it against tollgate_provider.h {}.x",
        abi::ABI_MAJOR,
        abi::ABI_MINOR,
        abi::ABI_MAJOR
    )]
    AbiMajor { major: u16, minor: u16 },
    #[error(
        "says its descriptor is {size} bytes, but ABI {major}.{minor} needs at least {needed}: it \
         is damaged or built against a wrong header"
    )]
    Size {
        size: u32,
        needed: usize,
        major: u16,
        minor: u16,
    },
    #[error("has a malformed descriptor: {0}")]
    Descriptor(String),
}

/// Why a call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The provider's own answer.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("did not answer within {0:?}; it is not asked again")]
    TimedOut(Duration),
    #[error("did not answer an earlier call in time, so it is not asked again")]
    Hung,
    #[error("does not support {0}")]
    Unsupported(&'static str),
    /// It answered something the ABI does not allow.
    #[error("broke the provider ABI: {0}")]
    Broken(String),
}

impl CallError {
    /// The provider has no credential (as opposed to failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::Provider(e) if e.kind == ErrorKind::NotFound)
    }
}

/// A loaded provider.
#[derive(Debug)]
pub struct LoadedProvider {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: String,
    pub abi_minor: u16,
    pub capabilities: Capabilities,
    descriptor: &'static Descriptor,
    /// Held by the thread running a call: one call at a time.
    calling: Arc<Mutex<()>>,
    hung: Arc<AtomicBool>,
}

/// A string the provider owns, copied; `None` for null.
///
/// # Safety
/// `p` is null or a NUL-terminated string that stays valid during the call.
unsafe fn copy_str(p: *const c_char, what: &str) -> Result<Option<String>, String> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let text = unsafe { CStr::from_ptr(p) };
    text.to_str()
        .map(|s| Some(s.to_owned()))
        .map_err(|_| format!("its {what} is not UTF-8"))
}

/// Loads the library at `path` and checks its descriptor.
pub fn load(path: &Path) -> Result<LoadedProvider, LoadError> {
    // SAFETY: loading a library runs its initialisers. Providers are code the administrator or
    // user installed in the provider search path, trusted like any installed library.
    let library =
        unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Load(e.to_string()))?;
    // Never unloaded: see the module comment.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    let symbol = format!("{}\0", abi::ENTRY_SYMBOL);
    // SAFETY: the entry symbol's type is fixed by the ABI.
    let entry: EntryFn =
        *unsafe { library.get::<EntryFn>(symbol.as_bytes()) }.map_err(|_| LoadError::NoEntry)?;
    // SAFETY: the ABI's entry function takes nothing and returns a static descriptor or null.
    let descriptor = unsafe { entry() };
    // SAFETY: as the entry function returned it.
    unsafe { from_descriptor(path, descriptor) }
}

/// Checks the descriptor a provider's entry function returned, as [`load`] does.
///
/// # Safety
/// `descriptor` is null or points to a descriptor that starts with a [`DescriptorHeader`], has
/// at least the `size` bytes that header says (and a whole ABI 1.0 descriptor when that size
/// covers one), and stays valid and unchanged for as long as the returned provider or a call
/// it started may use it (for a loaded library: the rest of the process), its strings
/// NUL-terminated or null, its functions following the ABI.
pub unsafe fn from_descriptor(
    path: &Path,
    descriptor: *const Descriptor,
) -> Result<LoadedProvider, LoadError> {
    if descriptor.is_null() {
        return Err(LoadError::NullDescriptor);
    }
    // SAFETY: every descriptor of every version starts with this header.
    let header = unsafe { descriptor.cast::<DescriptorHeader>().read() };
    if header.abi_major != abi::ABI_MAJOR {
        return Err(LoadError::AbiMajor {
            major: header.abi_major,
            minor: header.abi_minor,
        });
    }
    let needed = abi::DESCRIPTOR_SIZE_1_0;
    if (header.size as usize) < needed {
        return Err(LoadError::Size {
            size: header.size,
            needed,
            major: header.abi_major,
            minor: header.abi_minor,
        });
    }
    // SAFETY: the provider says the descriptor has at least all the fields of this version,
    // and it is static.
    let descriptor: &'static Descriptor = unsafe { &*descriptor };
    let bad = LoadError::Descriptor;
    // SAFETY: the descriptor's strings are static NUL-terminated strings (or null).
    let (name, version, description) = unsafe {
        (
            copy_str(descriptor.name, "name").map_err(bad)?,
            copy_str(descriptor.version, "version").map_err(bad)?,
            copy_str(descriptor.description, "description").map_err(bad)?,
        )
    };
    let name = name.ok_or_else(|| bad("it has no name".to_owned()))?;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(bad(format!(
            "its name {name:?} is not 1 to 64 lowercase letters, digits and '-'"
        )));
    }
    let capabilities = Capabilities::from_bits(descriptor.capabilities);
    for (claimed, present, what) in [
        (capabilities.lookup, descriptor.lookup.is_some(), "lookup"),
        (capabilities.store, descriptor.store.is_some(), "store"),
        (capabilities.erase, descriptor.erase.is_some(), "erase"),
        (
            true,
            descriptor.free_credential.is_some(),
            "free_credential",
        ),
        (true, descriptor.free_message.is_some(), "free_message"),
    ] {
        if claimed && !present {
            return Err(bad(format!("it has no {what} function")));
        }
    }
    Ok(LoadedProvider {
        path: path.to_owned(),
        name,
        version: version.unwrap_or_default(),
        description: description.unwrap_or_default(),
        abi_minor: header.abi_minor,
        capabilities,
        descriptor,
        calling: Arc::new(Mutex::new(())),
        hung: Arc::new(AtomicBool::new(false)),
    })
}

/// A request as the ABI carries it, owning its strings.
struct OwnedRequest {
    url: CString,
    flags: u32,
}

impl OwnedRequest {
    fn new(request: &Request) -> Result<OwnedRequest, CallError> {
        Ok(OwnedRequest {
            url: CString::new(request.url.as_str())
                .map_err(|_| CallError::Broken("the URL contains a NUL byte".to_owned()))?,
            flags: if request.interactive {
                abi::flags::INTERACTIVE
            } else {
                0
            },
        })
    }

    fn raw(&self) -> RawRequest {
        RawRequest {
            size: std::mem::size_of::<RawRequest>() as u32,
            flags: self.flags,
            url: self.url.as_ptr(),
        }
    }
}

/// The provider's message for a failed call, copied and given back to it.
///
/// # Safety
/// `message` is null or was set by a call of `descriptor`'s provider.
unsafe fn take_message(descriptor: &Descriptor, message: *mut c_char) -> String {
    if message.is_null() {
        return "no message".to_owned();
    }
    // SAFETY: the provider set it to a NUL-terminated string it owns.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    if let Some(free) = descriptor.free_message {
        // SAFETY: given back once to the provider that made it.
        unsafe { free(message) };
    }
    text
}

/// The answer of a call: OK, or the provider's error with its message.
///
/// # Safety
/// As [`take_message`].
unsafe fn status(
    descriptor: &Descriptor,
    code: i32,
    message: *mut c_char,
) -> Result<(), CallError> {
    if code == abi::status::OK {
        if !message.is_null() {
            // SAFETY: as the function's contract.
            unsafe { take_message(descriptor, message) };
        }
        return Ok(());
    }
    // SAFETY: as the function's contract.
    let message = unsafe { take_message(descriptor, message) };
    Err(CallError::Provider(ProviderError::new(
        ErrorKind::from_code(code),
        message,
    )))
}

/// Copies a credential the provider returned, then gives it back to the provider.
///
/// # Safety
/// `raw` was returned by `descriptor`'s `lookup` and is not used again.
unsafe fn take_credential(
    descriptor: &Descriptor,
    raw: *mut RawCredential,
) -> Result<Credential, CallError> {
    let broken = |m: &str| CallError::Broken(m.to_owned());
    if raw.is_null() {
        return Err(broken("lookup said OK but returned no credential"));
    }
    let copied = (|| {
        // SAFETY: non-null, and every version's credential starts with its size.
        let size = unsafe { std::ptr::addr_of!((*raw).size).read() };
        if (size as usize) < abi::CREDENTIAL_SIZE_1_0 {
            return Err(broken(
                "lookup returned a credential smaller than the ABI's",
            ));
        }
        // SAFETY: a credential of at least the fields read below, from the provider.
        let c = unsafe { &*raw };
        // SAFETY: the credential's strings are NUL-terminated and valid until freed below.
        let secret = unsafe { copy_str(c.secret, "credential's secret") }
            .map_err(CallError::Broken)?
            .ok_or_else(|| broken("lookup returned a credential without a secret"))?;
        let secret = Secret::new(secret);
        // SAFETY: as above.
        let user = unsafe { copy_str(c.user, "credential's user") }.map_err(CallError::Broken)?;
        match (Kind::from_code(c.kind), user) {
            (Some(Kind::LicenseKey), _) => Ok(Credential::LicenseKey(secret)),
            (Some(Kind::Token), _) => Ok(Credential::Token(secret)),
            (Some(Kind::Password), Some(user)) => Ok(Credential::Password {
                user,
                password: secret,
            }),
            (Some(Kind::Password), None) => {
                Err(broken("lookup returned a password without a user"))
            }
            (None, _) => Err(CallError::Broken(format!(
                "lookup returned a credential of unknown kind {}",
                c.kind
            ))),
        }
    })();
    if let Some(free) = descriptor.free_credential {
        // SAFETY: given back once to the provider that made it.
        unsafe { free(raw) };
    }
    copied
}

/// A credential as the ABI carries it, owning its strings (wiped when dropped).
struct OwnedCredential {
    kind: u32,
    user: Option<CString>,
    secret: zeroize::Zeroizing<Vec<u8>>,
}

impl OwnedCredential {
    fn new(credential: &Credential) -> Result<OwnedCredential, CallError> {
        let nul = || CallError::Broken("the credential contains a NUL byte".to_owned());
        let given = credential.secret().expose().as_bytes();
        if given.contains(&0) {
            return Err(nul());
        }
        // Room for the NUL from the start, so the secret is never copied by a reallocation.
        let mut secret = zeroize::Zeroizing::new(Vec::with_capacity(given.len() + 1));
        secret.extend_from_slice(given);
        secret.push(0);
        Ok(OwnedCredential {
            kind: credential.kind().code(),
            user: credential
                .user()
                .map(|u| CString::new(u).map_err(|_| nul()))
                .transpose()?,
            secret,
        })
    }

    fn raw(&self) -> RawCredential {
        RawCredential {
            size: std::mem::size_of::<RawCredential>() as u32,
            kind: self.kind,
            user: self.user.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
            secret: self.secret.as_ptr().cast(),
        }
    }
}

impl LoadedProvider {
    /// Runs `call` on a thread of its own, one at a time, for at most `limit`.
    fn bounded<T: Send + 'static>(
        &self,
        limit: Duration,
        call: impl FnOnce(&'static Descriptor) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, CallError> {
        if self.hung.load(Ordering::SeqCst) {
            return Err(CallError::Hung);
        }
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        let descriptor = self.descriptor;
        let calling = Arc::clone(&self.calling);
        let hung = Arc::clone(&self.hung);
        let spawned = std::thread::Builder::new()
            .name(format!("provider-{}", self.name))
            .spawn(move || {
                let _one_at_a_time = calling.lock().unwrap_or_else(|e| e.into_inner());
                // A call that waited here past its limit, or behind one that did, is abandoned:
                // it must not reach the provider.
                if hung.load(Ordering::SeqCst) {
                    let _ = done.send(Err(CallError::Hung));
                    return;
                }
                let _ = done.send(call(descriptor));
            });
        if let Err(e) = spawned {
            return Err(CallError::Broken(format!(
                "cannot start a thread for it: {e}"
            )));
        }
        match answer.recv_timeout(limit) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.hung.store(true, Ordering::SeqCst);
                Err(CallError::TimedOut(limit))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(CallError::Broken(
                "its call ended without an answer".to_owned(),
            )),
        }
    }

    /// The provider's credential for `request.url`.
    pub fn lookup(&self, request: &Request, limit: Duration) -> Result<Credential, CallError> {
        let lookup = self.descriptor.lookup.filter(|_| self.capabilities.lookup);
        let lookup = lookup.ok_or(CallError::Unsupported("lookup"))?;
        let request = OwnedRequest::new(request)?;
        self.bounded(limit, move |descriptor| {
            let raw_request = request.raw();
            let mut credential: *mut RawCredential = std::ptr::null_mut();
            let mut message: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid request and out-pointers, as the header describes; the request's
            // strings outlive the call.
            let code = unsafe { lookup(&raw_request, &mut credential, &mut message) };
            // SAFETY: `message` was set (or not) by this provider's call.
            if let Err(e) = unsafe { status(descriptor, code, message) } {
                // A credential set beside an error is not used, but it is the provider's: it
                // goes back to be wiped and freed, not leaked with its secret in memory.
                if !credential.is_null()
                    && let Some(free) = descriptor.free_credential
                {
                    // SAFETY: set by this provider's lookup, given back once.
                    unsafe { free(credential) };
                }
                return Err(e);
            }
            // SAFETY: returned by this provider's lookup, used once.
            unsafe { take_credential(descriptor, credential) }
        })
    }

    /// Has the provider keep `credential` for `request.url`.
    pub fn store(
        &self,
        request: &Request,
        credential: &Credential,
        limit: Duration,
    ) -> Result<(), CallError> {
        let store = self.descriptor.store.filter(|_| self.capabilities.store);
        let store = store.ok_or(CallError::Unsupported("store"))?;
        let request = OwnedRequest::new(request)?;
        let credential = OwnedCredential::new(credential)?;
        self.bounded(limit, move |descriptor| {
            let (raw_request, raw_credential) = (request.raw(), credential.raw());
            let mut message: *mut c_char = std::ptr::null_mut();
            // SAFETY: valid pointers whose strings outlive the call.
            let code = unsafe { store(&raw_request, &raw_credential, &mut message) };
            // SAFETY: `message` was set (or not) by this provider's call.
            unsafe { status(descriptor, code, message) }
        })
    }

    /// Has the provider forget the credentials for `request.url`.
    pub fn erase(&self, request: &Request, limit: Duration) -> Result<(), CallError> {
        let erase = self.descriptor.erase.filter(|_| self.capabilities.erase);
        let erase = erase.ok_or(CallError::Unsupported("erase"))?;
        let request = OwnedRequest::new(request)?;
        self.bounded(limit, move |descriptor| {
            let raw_request = request.raw();
            let mut message: *mut c_char = std::ptr::null_mut();
            // SAFETY: a valid request whose strings outlive the call.
            let code = unsafe { erase(&raw_request, &mut message) };
            // SAFETY: `message` was set (or not) by this provider's call.
            unsafe { status(descriptor, code, message) }
        })
    }
}
