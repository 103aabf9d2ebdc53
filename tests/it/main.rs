//! The integration tests: the client, the runner and the binary against the in-process emulator.

mod accounts;
mod apply;
mod approved;
mod cli;
mod client;
mod crash;
mod desired;
mod emulator;
mod export;
mod fuzz_corpus;
mod history;
mod hostile;
mod lock;
mod logfail;
mod migration;
mod report;
mod secrets;
mod sheets;
mod signing;
mod soak;
mod support;
mod tls;
mod verify;
mod workload;
