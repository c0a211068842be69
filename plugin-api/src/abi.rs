//! The C ABI, field for field as `include/tollgate_provider.h` declares it (a test compiles the
//! header and compares every size and offset). Nothing here is Rust-only: no `String`, `Vec`,
//! `Result` or trait object crosses it.
//!
//! Fields are only ever appended, and every struct says its own `size`, so that a host and a
//! provider built against different minor versions read only what both know.

use std::ffi::c_char;

/// The ABI's major version: a provider of another major is refused.
pub const ABI_MAJOR: u16 = 1;
/// The ABI's minor version: raised when fields are appended.
pub const ABI_MINOR: u16 = 0;
/// The symbol every provider exports.
pub const ENTRY_SYMBOL: &str = "tollgate_provider_entry";

/// What a call returns.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const URL_NOT_SUPPORTED: i32 = 2;
    pub const OPERATION_NOT_SUPPORTED: i32 = 3;
    pub const LOCKED: i32 = 4;
    pub const OTHER: i32 = 5;
}

/// Credential kinds.
pub mod kind {
    pub const LICENSE_KEY: u32 = 1;
    pub const PASSWORD: u32 = 2;
    pub const TOKEN: u32 = 3;
}

/// Capability bits of `Descriptor::capabilities`.
pub mod capability {
    pub const LOOKUP: u32 = 1;
    pub const STORE: u32 = 2;
    pub const ERASE: u32 = 4;
}

/// Request flag bits.
pub mod flags {
    /// The provider may ask the user, e.g. to unlock a keyring.
    pub const INTERACTIVE: u32 = 1;
}

/// The size of ABI 1.0's descriptor: the least a provider of major version 1 may declare. A
/// later minor version appends fields, and a host reads those only when the provider's `size`
/// covers them, so providers of older minor versions keep working.
pub const DESCRIPTOR_SIZE_1_0: usize = std::mem::size_of::<Descriptor>();
/// The size of ABI 1.0's credential, likewise.
pub const CREDENTIAL_SIZE_1_0: usize = std::mem::size_of::<RawCredential>();
/// The size of ABI 1.0's request, likewise.
pub const REQUEST_SIZE_1_0: usize = std::mem::size_of::<RawRequest>();

/// `tollgate_request`.
#[repr(C)]
#[derive(Debug)]
pub struct RawRequest {
    pub size: u32,
    pub flags: u32,
    pub url: *const c_char,
}

/// `tollgate_credential`.
#[repr(C)]
#[derive(Debug)]
pub struct RawCredential {
    pub size: u32,
    pub kind: u32,
    pub user: *const c_char,
    pub secret: *const c_char,
}

pub type LookupFn = unsafe extern "C" fn(
    request: *const RawRequest,
    credential: *mut *mut RawCredential,
    message: *mut *mut c_char,
) -> i32;
pub type StoreFn = unsafe extern "C" fn(
    request: *const RawRequest,
    credential: *const RawCredential,
    message: *mut *mut c_char,
) -> i32;
pub type EraseFn =
    unsafe extern "C" fn(request: *const RawRequest, message: *mut *mut c_char) -> i32;
pub type FreeCredentialFn = unsafe extern "C" fn(credential: *mut RawCredential);
pub type FreeMessageFn = unsafe extern "C" fn(message: *mut c_char);
/// `tollgate_provider_entry`.
pub type EntryFn = unsafe extern "C" fn() -> *const Descriptor;

/// `tollgate_provider`: the static descriptor a provider's entry symbol returns. A null
/// function pointer is `None`.
#[repr(C)]
#[derive(Debug)]
pub struct Descriptor {
    pub abi_major: u16,
    pub abi_minor: u16,
    pub size: u32,
    pub name: *const c_char,
    pub version: *const c_char,
    pub description: *const c_char,
    pub capabilities: u32,
    pub lookup: Option<LookupFn>,
    pub store: Option<StoreFn>,
    pub erase: Option<EraseFn>,
    pub free_credential: Option<FreeCredentialFn>,
    pub free_message: Option<FreeMessageFn>,
}

// SAFETY: a descriptor is immutable static data (pointers to static strings and to functions),
// so sharing references to it between threads is sound.
#[allow(unsafe_code)]
unsafe impl Sync for Descriptor {}

/// The first fields of every descriptor, whatever its version: all a host may read before it
/// knows the major version and size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    pub abi_major: u16,
    pub abi_minor: u16,
    pub size: u32,
}

/// Sizes and field offsets of the ABI's structs, as this crate lays them out: what the header
/// test compares against the C compiler's view.
pub fn layout() -> Vec<(&'static str, usize)> {
    use std::mem::{offset_of, size_of};
    vec![
        ("sizeof(tollgate_request)", size_of::<RawRequest>()),
        ("tollgate_request.size", offset_of!(RawRequest, size)),
        ("tollgate_request.flags", offset_of!(RawRequest, flags)),
        ("tollgate_request.url", offset_of!(RawRequest, url)),
        ("sizeof(tollgate_credential)", size_of::<RawCredential>()),
        ("tollgate_credential.size", offset_of!(RawCredential, size)),
        ("tollgate_credential.kind", offset_of!(RawCredential, kind)),
        ("tollgate_credential.user", offset_of!(RawCredential, user)),
        (
            "tollgate_credential.secret",
            offset_of!(RawCredential, secret),
        ),
        ("sizeof(tollgate_provider)", size_of::<Descriptor>()),
        (
            "tollgate_provider.abi_major",
            offset_of!(Descriptor, abi_major),
        ),
        (
            "tollgate_provider.abi_minor",
            offset_of!(Descriptor, abi_minor),
        ),
        ("tollgate_provider.size", offset_of!(Descriptor, size)),
        ("tollgate_provider.name", offset_of!(Descriptor, name)),
        ("tollgate_provider.version", offset_of!(Descriptor, version)),
        (
            "tollgate_provider.description",
            offset_of!(Descriptor, description),
        ),
        (
            "tollgate_provider.capabilities",
            offset_of!(Descriptor, capabilities),
        ),
        ("tollgate_provider.lookup", offset_of!(Descriptor, lookup)),
        ("tollgate_provider.store", offset_of!(Descriptor, store)),
        ("tollgate_provider.erase", offset_of!(Descriptor, erase)),
        (
            "tollgate_provider.free_credential",
            offset_of!(Descriptor, free_credential),
        ),
        (
            "tollgate_provider.free_message",
            offset_of!(Descriptor, free_message),
        ),
        ("TOLLGATE_PROVIDER_ABI_MAJOR", usize::from(ABI_MAJOR)),
        ("TOLLGATE_PROVIDER_ABI_MINOR", usize::from(ABI_MINOR)),
        ("TOLLGATE_OK", status::OK as usize),
        ("TOLLGATE_NOT_FOUND", status::NOT_FOUND as usize),
        (
            "TOLLGATE_URL_NOT_SUPPORTED",
            status::URL_NOT_SUPPORTED as usize,
        ),
        (
            "TOLLGATE_OPERATION_NOT_SUPPORTED",
            status::OPERATION_NOT_SUPPORTED as usize,
        ),
        ("TOLLGATE_LOCKED", status::LOCKED as usize),
        ("TOLLGATE_OTHER", status::OTHER as usize),
        ("TOLLGATE_KIND_LICENSE_KEY", kind::LICENSE_KEY as usize),
        ("TOLLGATE_KIND_PASSWORD", kind::PASSWORD as usize),
        ("TOLLGATE_KIND_TOKEN", kind::TOKEN as usize),
        ("TOLLGATE_CAN_LOOKUP", capability::LOOKUP as usize),
        ("TOLLGATE_CAN_STORE", capability::STORE as usize),
        ("TOLLGATE_CAN_ERASE", capability::ERASE as usize),
        ("TOLLGATE_INTERACTIVE", flags::INTERACTIVE as usize),
    ]
}
