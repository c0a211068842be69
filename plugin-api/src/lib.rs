//! The credential-provider plugin ABI (to be filled by the provider-plugins issue).
//!
//! It will hold: the versioned C ABI (one exported entry symbol returning a `#[repr(C)]` static
//! descriptor that starts with the ABI version and its own size), the credential kinds and error
//! codes that cross it, the safe trait and macro a provider implements to export that symbol,
//! and the host side that finds, loads (never unloads) and time-bounds providers. It is the only
//! crate of the workspace allowed `extern "C"` and `unsafe`, and only in its FFI modules.
//!
//! Nothing crosses the ABI but C types: no `String`, `Vec`, `Result` or trait objects.
