//! `tollgate`: the repository server and entitlement service. Everything is in the library;
//! see `cli.rs` for the commands.

fn main() -> std::process::ExitCode {
    tollgate_server::cli::main()
}
