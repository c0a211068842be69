//! The client helper (to be filled by the client-helper and P2P issues).
//!
//! It will hold: the provider chain (credentials from plugins, in a configured order), the
//! client of the entitlement service with a per-remote, per-ref token cache, the
//! `tollgate-helper` command line, the `tollgate-authenticator` D-Bus service implementing
//! `org.freedesktop.Flatpak.Authenticator`, token-aware `ostree pull`, and P2P pulls that give a
//! token only to the origin and to mirrors the user trusts. It must never send a token to a
//! server it was not issued for.
