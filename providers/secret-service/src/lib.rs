//! The Secret Service credential provider (to be filled by the provider-plugins issue).
//!
//! It will store and find license keys, passwords and tokens in the freedesktop Secret Service
//! (gnome-keyring, KeePassXC, ...) as items with the attributes `service` = `tollgate`,
//! `url` = the normalised entitlement service URL, `kind`, and `user` for a password, so that
//! `secret-tool` finds what it stores and the other way round. It depends on `plugin-api` and its
//! own backend crate only.
