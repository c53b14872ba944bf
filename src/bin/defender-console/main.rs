//! `defender-console`: the policy and audit service of `spec/cli.md`. Defenders long-poll the
//! App-Embedded policy from it and send their audits and heartbeats; people edit the policy and
//! review audits and defenders in its pages or through its JSON API (`/api/v1`).
//!
//! Built for the host target only: the static musl target is the defender's (see Cargo.toml).

#[cfg(not(target_env = "musl"))]
mod api;
#[cfg(not(target_env = "musl"))]
mod app;
#[cfg(not(target_env = "musl"))]
mod auth;
#[cfg(not(target_env = "musl"))]
mod events;
#[cfg(not(target_env = "musl"))]
mod serve;
#[cfg(not(target_env = "musl"))]
mod store;
#[cfg(not(target_env = "musl"))]
mod tls;
#[cfg(not(target_env = "musl"))]
mod web;

use std::process::ExitCode;

#[cfg(not(target_env = "musl"))]
fn main() -> ExitCode {
    use clap::Parser;
    match serve::run(serve::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("defender-console: error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_env = "musl")]
fn main() -> ExitCode {
    eprintln!(
        "defender-console is built for the host target only: cargo build --bin defender-console"
    );
    ExitCode::FAILURE
}
