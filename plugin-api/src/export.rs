//! The provider side: implement [`Provider`] and export it with [`export_provider!`], which
//! makes the `tollgate_provider_entry` symbol and a static descriptor whose functions call the
//! implementation through the trampolines below.
//!
//! The trampolines are the only code of a provider that touches raw pointers. Each one runs the
//! implementation under `catch_unwind` (a panic must not cross `extern "C"`: since Rust 1.81 it
//! aborts the host), turns its result into a status code and a message, and allocates what it
//! returns with Rust's allocator, to be freed by the same provider's `free_credential` and
//! `free_message`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use zeroize::Zeroize;

use crate::abi::{self, RawCredential, RawRequest};
use crate::credential::{Credential, ErrorKind, Kind, ProviderError, Request, Secret};

/// A credential provider, in safe Rust. The host calls one method at a time, from any thread.
pub trait Provider: Send + Sync + 'static {
    /// The credential for `request.url`; [`ErrorKind::NotFound`] when there is none.
    fn lookup(&self, request: &Request) -> Result<Credential, ProviderError>;

    /// Keeps `credential` for `request.url`, replacing any it had.
    fn store(&self, _request: &Request, _credential: &Credential) -> Result<(), ProviderError> {
        Err(ProviderError::new(
            ErrorKind::OperationNotSupported,
            "this provider cannot store credentials",
        ))
    }

    /// Forgets the credentials for `request.url`; [`ErrorKind::NotFound`] when there were none.
    fn erase(&self, _request: &Request) -> Result<(), ProviderError> {
        Err(ProviderError::new(
            ErrorKind::OperationNotSupported,
            "this provider cannot erase credentials",
        ))
    }
}

/// The one instance of an exported provider, made on first use; implemented by
/// [`export_provider!`].
pub trait Instance: Provider {
    fn instance() -> &'static Self;
}

/// Exports a [`Provider`] as `tollgate_provider_entry`.
///
/// ```text
/// tollgate_plugin_api::export_provider! {
///     provider: MyProvider,
///     new: MyProvider::new(),
///     name: "my-vault",
///     description: "credentials from My Vault",
///     capabilities: [lookup, store, erase],
/// }
/// ```
/// `new` runs once, on the first call, under the same panic guard as the calls. The version is
/// the provider crate's own (`CARGO_PKG_VERSION`).
#[macro_export]
macro_rules! export_provider {
    (
        provider: $ty:ty,
        new: $new:expr,
        name: $name:literal,
        description: $description:literal,
        capabilities: [$($capability:ident),* $(,)?] $(,)?
    ) => {
        impl $crate::Instance for $ty {
            fn instance() -> &'static Self {
                static INSTANCE: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
                INSTANCE.get_or_init(|| $new)
            }
        }

        /// The descriptor tollgate's helper reads; see `tollgate_provider.h`.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn tollgate_provider_entry() -> *const $crate::abi::Descriptor {
            static DESCRIPTOR: $crate::abi::Descriptor = $crate::abi::Descriptor {
                abi_major: $crate::abi::ABI_MAJOR,
                abi_minor: $crate::abi::ABI_MINOR,
                size: ::std::mem::size_of::<$crate::abi::Descriptor>() as u32,
                name: concat!($name, "\0").as_ptr().cast(),
                version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast(),
                description: concat!($description, "\0").as_ptr().cast(),
                capabilities: 0 $(| $crate::__capability!($capability))*,
                lookup: Some($crate::__private::lookup::<$ty>),
                store: Some($crate::__private::store::<$ty>),
                erase: Some($crate::__private::erase::<$ty>),
                free_credential: Some($crate::__private::free_credential),
                free_message: Some($crate::__private::free_message),
            };
            &DESCRIPTOR
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __capability {
    (lookup) => {
        $crate::abi::capability::LOOKUP
    };
    (store) => {
        $crate::abi::capability::STORE
    };
    (erase) => {
        $crate::abi::capability::ERASE
    };
}

/// What a guarded call produced: a status code, with a message for errors.
fn guarded(message: *mut *mut c_char, call: impl FnOnce() -> Result<(), ProviderError>) -> i32 {
    let (code, text) = match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(())) => return abi::status::OK,
        Ok(Err(e)) => (e.kind.code(), e.message),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            (abi::status::OTHER, format!("the provider panicked: {what}"))
        }
    };
    if !message.is_null() {
        let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host passes a valid place for a message pointer (or null, checked).
        unsafe { *message = text.into_raw() };
    }
    code
}

/// The request, checked: a size that covers the fields read, and a UTF-8 URL.
///
/// # Safety
/// `request` is null or points to a `tollgate_request` of at least its `size` bytes.
unsafe fn read_request(request: *const RawRequest) -> Result<Request, ProviderError> {
    if request.is_null() {
        return Err(ProviderError::other("the host sent no request"));
    }
    // SAFETY: non-null, and every version's request starts with its size.
    let size = unsafe { std::ptr::addr_of!((*request).size).read() };
    if (size as usize) < abi::REQUEST_SIZE_1_0 {
        return Err(ProviderError::other(
            "the host sent a request smaller than the ABI's",
        ));
    }
    // SAFETY: the caller's contract, and the size covers every field read.
    let raw = unsafe { &*request };
    if raw.url.is_null() {
        return Err(ProviderError::other(
            "the host sent a request this provider cannot read",
        ));
    }
    // SAFETY: checked non-null; the host sends NUL-terminated strings.
    let url = unsafe { CStr::from_ptr(raw.url) }
        .to_str()
        .map_err(|_| ProviderError::other("the host sent a URL that is not UTF-8"))?;
    Ok(Request {
        url: url.to_owned(),
        interactive: raw.flags & abi::flags::INTERACTIVE != 0,
    })
}

/// A credential the host passed in.
///
/// # Safety
/// `credential` is null or points to a `tollgate_credential` of at least its `size` bytes.
unsafe fn read_credential(credential: *const RawCredential) -> Result<Credential, ProviderError> {
    if credential.is_null() {
        return Err(ProviderError::other("the host sent no credential"));
    }
    // SAFETY: non-null, and every version's credential starts with its size.
    let size = unsafe { std::ptr::addr_of!((*credential).size).read() };
    if (size as usize) < abi::CREDENTIAL_SIZE_1_0 {
        return Err(ProviderError::other(
            "the host sent a credential smaller than the ABI's",
        ));
    }
    // SAFETY: the caller's contract, and the size covers every field read.
    let raw = unsafe { &*credential };
    if raw.secret.is_null() {
        return Err(ProviderError::other(
            "the host sent a credential this provider cannot read",
        ));
    }
    let text = |p: *const c_char, what: &str| {
        // SAFETY: non-null pointers from the host are NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }
            .to_str()
            .map(str::to_owned)
            .map_err(|_| ProviderError::other(format!("the host sent a {what} that is not UTF-8")))
    };
    let secret = Secret::new(text(raw.secret, "secret")?);
    match Kind::from_code(raw.kind) {
        Some(Kind::LicenseKey) => Ok(Credential::LicenseKey(secret)),
        Some(Kind::Token) => Ok(Credential::Token(secret)),
        Some(Kind::Password) if !raw.user.is_null() => Ok(Credential::Password {
            user: text(raw.user, "user name")?,
            password: secret,
        }),
        Some(Kind::Password) => Err(ProviderError::other("a password credential needs a user")),
        None => Err(ProviderError::other(format!(
            "unknown credential kind {}",
            raw.kind
        ))),
    }
}

/// A credential allocated for the host, freed by [`__private::free_credential`].
fn allocate(credential: &Credential) -> Result<*mut RawCredential, ProviderError> {
    // The user first: once the secret is copied, nothing may fail before it is handed over.
    let user = credential
        .user()
        .map(|user| {
            CString::new(user)
                .map_err(|_| ProviderError::other("the credential's user contains a NUL byte"))
        })
        .transpose()?;
    // `CString::new` of a `&str` allocates room for the NUL at once: no copy is left behind.
    let secret = CString::new(credential.secret().expose())
        .map_err(|_| ProviderError::other("the credential's secret contains a NUL byte"))?;
    let user = user.map_or(std::ptr::null_mut(), CString::into_raw);
    Ok(Box::into_raw(Box::new(RawCredential {
        size: std::mem::size_of::<RawCredential>() as u32,
        kind: credential.kind().code(),
        user,
        secret: secret.into_raw(),
    })))
}

/// Takes back a string made with `CString::into_raw`, wiping it.
///
/// # Safety
/// `p` is null or came from `CString::into_raw` and is not used again.
unsafe fn wipe(p: *const c_char) {
    if !p.is_null() {
        // SAFETY: the caller's contract.
        let mut bytes = unsafe { CString::from_raw(p.cast_mut()) }.into_bytes();
        bytes.zeroize();
    }
}

#[doc(hidden)]
pub mod __private {
    //! The functions a descriptor points to; generic over the provider, so that each provider's
    //! `export_provider!` instantiates them in its own library.

    use super::*;

    /// `lookup`.
    ///
    /// # Safety
    /// The pointers follow `tollgate_provider.h`.
    pub unsafe extern "C" fn lookup<P: Instance>(
        request: *const RawRequest,
        credential: *mut *mut RawCredential,
        message: *mut *mut c_char,
    ) -> i32 {
        guarded(message, || {
            // SAFETY: the host follows the header.
            let request = unsafe { read_request(request) }?;
            if credential.is_null() {
                return Err(ProviderError::other(
                    "the host gave no place for the credential",
                ));
            }
            let found = P::instance().lookup(&request)?;
            let raw = allocate(&found)?;
            // SAFETY: checked non-null; the host gives a valid place for the pointer.
            unsafe { *credential = raw };
            Ok(())
        })
    }

    /// `store`.
    ///
    /// # Safety
    /// The pointers follow `tollgate_provider.h`.
    pub unsafe extern "C" fn store<P: Instance>(
        request: *const RawRequest,
        credential: *const RawCredential,
        message: *mut *mut c_char,
    ) -> i32 {
        guarded(message, || {
            // SAFETY: the host follows the header.
            let request = unsafe { read_request(request) }?;
            // SAFETY: likewise.
            let credential = unsafe { read_credential(credential) }?;
            P::instance().store(&request, &credential)
        })
    }

    /// `erase`.
    ///
    /// # Safety
    /// The pointers follow `tollgate_provider.h`.
    pub unsafe extern "C" fn erase<P: Instance>(
        request: *const RawRequest,
        message: *mut *mut c_char,
    ) -> i32 {
        guarded(message, || {
            // SAFETY: the host follows the header.
            let request = unsafe { read_request(request) }?;
            P::instance().erase(&request)
        })
    }

    /// `free_credential`: takes back what `lookup` allocated, wiping the secret.
    ///
    /// # Safety
    /// `credential` is null or came from this provider's `lookup`, once.
    pub unsafe extern "C" fn free_credential(credential: *mut RawCredential) {
        if credential.is_null() {
            return;
        }
        // SAFETY: allocated by `allocate` with `Box::into_raw`, given back once.
        let raw = unsafe { Box::from_raw(credential) };
        // SAFETY: both strings came from `CString::into_raw` in `allocate`.
        unsafe {
            wipe(raw.user);
            wipe(raw.secret);
        }
    }

    /// `free_message`.
    ///
    /// # Safety
    /// `message` is null or came from one of this provider's calls, once.
    pub unsafe extern "C" fn free_message(message: *mut c_char) {
        // SAFETY: messages come from `CString::into_raw` in `guarded`.
        unsafe { wipe(message) };
    }
}
