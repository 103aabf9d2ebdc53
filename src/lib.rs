//! embatch applies spreadsheet change plans to Veeam Backup Enterprise Manager (EM, "Enterprise
//! Manager" throughout) through its REST API, and keeps a verifiable audit log of every request.
//!
//! The crate is cut by domain; ARCHITECTURE.md has the codemap and the invariants.

pub mod app;
pub mod audit;
pub mod cli;
pub mod console;
pub mod desired;
pub mod em;
pub mod emulator;
pub mod exit;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod plan;
pub mod report;
pub mod runner;
pub mod settings;
pub mod text;
