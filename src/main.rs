fn main() -> std::process::ExitCode {
    livenessd::cli::main()
}
