//! `tollgate`: the repository server and entitlement service. Everything is in the library;
//! see `commands/` for the commands.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate_server::commands::main()
}
