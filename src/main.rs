fn main() -> std::process::ExitCode {
    sidetrace::cli::main()
}
