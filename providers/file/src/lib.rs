//! The file credential provider (to be filled by the provider-plugins issue).
//!
//! It will read credentials from a 0600 TOML file keyed by entitlement service URL, and from
//! environment variables for CI use, and refuse a file that others can read. It depends on
//! `plugin-api` only.
