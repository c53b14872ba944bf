//! The defender as a library: every concern in its own module, used by the `defender` binary and
//! by the console (the workspace member `console/`), which validates policies and reads audit
//! events with the same code.
//!
//! Data flows one way: `seccomp` traps a call, `sensors` turn it into plain data, `policy` decides,
//! `supervisor` answers the kernel, `audit` records, `uplink` talks to the console (with `activity`, the summary of what
//! the workload did that goes with its heartbeats). `sys` is the
//! only home of libc and `unsafe`: the compiler refuses `unsafe` anywhere else, but for the
//! marked calls of the one `unsafe fn` kept for its contract (`Listener::continue_call`, a TOCTOU
//! hazard rather than a memory one).

#![deny(unsafe_code)]

pub mod activity;
pub mod audit;
pub mod cli;
pub mod dns;
pub mod ecs;
pub mod embed;
pub mod exit;
pub mod input;
pub mod logger;
pub mod policy;
pub mod seccomp;
pub mod sensors;
pub mod supervisor;
#[allow(unsafe_code)]
pub mod sys;
pub mod uplink;
pub mod waas;
