//! `defender-console`: the policy and audit service. Defenders long-poll the App-Embedded policy
//! from it and send their audits and heartbeats; people edit the policy and review audits and
//! defenders in its pages or through its JSON API (`/api/v1`).
//!
//! A member of its own in the workspace: its server dependencies (axum, tokio, SQLite, rustls'
//! server side) are this package's only, so the static defender never links them.

mod api;
mod app;
mod auth;
mod beats;
mod documents;
mod events;
mod gate;
mod http;
mod index;
mod ingest;
mod learning;
mod lifecycle;
mod logs;
mod metrics;
mod native;
mod operations;
mod passwords;
mod people;
mod retention;
mod scope;
mod serve;
mod store;
mod throttle;
mod tls;
mod web;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    logs::init();
    match serve::run(serve::Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("defender-console: error: {e}");
            ExitCode::FAILURE
        }
    }
}
