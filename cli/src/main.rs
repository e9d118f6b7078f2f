//! The `kubeforge` binary; everything lives in the library so that tests can reach it.

fn main() -> std::process::ExitCode {
    kubeforge::cli::main()
}
