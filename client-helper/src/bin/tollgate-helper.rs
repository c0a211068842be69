fn main() -> std::process::ExitCode {
    tollgate_helper::helper_main()
}
