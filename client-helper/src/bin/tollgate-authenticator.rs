fn main() -> std::process::ExitCode {
    tollgate_helper::authenticator_main()
}
