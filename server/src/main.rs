//! `tollgate`: the repository server and entitlement service. Everything is in the library;
//! see `commands/` for the commands.

// mimalloc: a request allocates a dozen small things, and glibc's malloc and free were 12% of
// the CPU time of serving random gated objects (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate_server::commands::main()
}
