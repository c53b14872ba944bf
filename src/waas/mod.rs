//! The web application firewall (WAAS): its policy document, the inspection of one HTTP request,
//! what is decided besides the inspection (guard.rs), the proxy that sits in front of the
//! application (proxy.rs), and (in the supervisor, supervisor/waas.rs) the takeover of the
//! protected port's `bind`. docs/waas.md is the contract and the design.
//!
//! Data flows as everywhere else in the defender: a request becomes plain data ([`Request`]), the
//! pure inspection ([`inspect`]) finds attacks in it, the app's effects decide, the audit goes out.

pub mod contain;
mod decode;
mod fields;
pub mod guard;
pub mod inspect;
pub mod live;
pub mod openapi;
pub mod policy;
pub mod proxy;
mod rules;

pub use inspect::{Finding, Request, inspect};
pub use policy::{App, Attack, Compiled, Document, Effect, Protections, WaasError, compile, parse};
pub use rules::warm_up;
