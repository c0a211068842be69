//! tollgate's one test harness, and the end-to-end tests that use it.
//!
//! The library part ([`cmd`], [`fixture`], [`server`], [`http`], [`gpg`]) gives tests temporary
//! directories with an isolated HOME and XDG tree, a command runner that puts a failed command's
//! stderr into the panic message, the real `tollgate` binary started on a port it picks itself,
//! and a raw HTTP/1.1 client that sends paths exactly as written (curl and reqwest would
//! normalise `..` away before the server ever saw it). Other crates use it as a dev-dependency.
//!
//! The tests (`#[cfg(test)]` modules below) drive the real `ostree` and `flatpak`. A missing
//! tool fails the test with a message saying what to install; nothing is skipped silently.

pub mod browser;
pub mod bus;
pub mod cmd;
pub mod customer;
pub mod fixture;
pub mod fuzz;
pub mod gated_repo;
pub mod gpg;
pub mod http;
pub mod keyring;
pub mod model;
pub mod pages;
pub mod postgres;
pub mod s3;
pub mod server;
pub mod service;
pub mod synth;
pub mod tokens;

#[cfg(test)]
mod audit_records;
#[cfg(test)]
mod authenticator;
#[cfg(test)]
mod bad_input;
#[cfg(test)]
mod basic_credentials;
#[cfg(test)]
mod changed_files;
#[cfg(test)]
mod credential_limits;
#[cfg(test)]
mod demo;
#[cfg(test)]
mod entitlement_api;
#[cfg(test)]
mod flatpak_install;
#[cfg(test)]
mod gating;
#[cfg(test)]
mod hostile_clients;
#[cfg(test)]
mod hostile_paths;
#[cfg(test)]
mod http_semantics;
#[cfg(test)]
mod index_size;
#[cfg(test)]
mod metrics;
#[cfg(test)]
mod object_storage;
#[cfg(test)]
mod one_service;
#[cfg(test)]
mod operator_checks;
#[cfg(test)]
mod order_hook;
#[cfg(test)]
mod ostree_pull;
#[cfg(test)]
mod p2p;
#[cfg(test)]
mod packages;
#[cfg(test)]
mod providers;
#[cfg(test)]
mod proxies;
#[cfg(test)]
mod publishers;
#[cfg(test)]
mod publishing;
#[cfg(test)]
mod ref_graphs;
#[cfg(test)]
mod restarts;
#[cfg(test)]
mod sandboxed_authenticator;
#[cfg(test)]
mod several_repos;
#[cfg(test)]
mod signed_repos;
#[cfg(test)]
mod token_issuance;
#[cfg(test)]
mod web_flow;
#[cfg(test)]
mod web_pages;
#[cfg(test)]
mod workspace_rules;
