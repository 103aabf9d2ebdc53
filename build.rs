//! Rebuilds the crate when a migration changes: the SQL files are embedded with `include_dir!`,
//! which cargo cannot see through on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
