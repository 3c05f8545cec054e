fn main() -> std::process::ExitCode {
    argocd_cdevents::cli::main()
}
