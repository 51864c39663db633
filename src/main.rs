//! The `gpuctl` binary: everything lives in the library so tests can drive it too.

fn main() -> std::process::ExitCode {
    gpuctl::cli::main()
}
