//! The integration tests: the client, the runner and the binary against the in-process emulator.

mod apply;
mod cli;
mod client;
mod crash;
mod emulator;
mod history;
mod soak;
mod support;
mod verify;
mod workload;
