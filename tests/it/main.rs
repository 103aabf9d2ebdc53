//! The integration tests: the client, the runner and the binary against the in-process emulator.

mod apply;
mod cli;
mod client;
mod emulator;
mod history;
mod support;
