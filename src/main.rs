/// mimalloc instead of glibc's malloc: the intake allocates and frees many small objects per
/// event (JSON maps, strings) from two threads, where glibc's arenas spent a fifth of the
/// gateway's CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    argocd_cdevents::cli::main()
}
