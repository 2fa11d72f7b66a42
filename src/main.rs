/// mimalloc: the fleet poller allocates and frees a probe's buffers thousands of times a second;
/// glibc's allocator spent a quarter of the poller's CPU on it (`docs/BENCHMARKS.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    baton::cli::main()
}
