fn main() -> std::process::ExitCode {
    tollgate_helper::cli::main()
}
