//! `sneakerstop`: the one binary. Everything it does lives in the library; see `cli`.

use clap::Parser;

/// mimalloc instead of glibc's malloc: argon2's 19 MiB blocks, freed after each signup,
/// stayed resident under glibc (a few signups grew the process by hundreds of MiB);
/// mimalloc returns them to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = sneakerstop::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sneakerstop::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "sneakerstop stopped with an error");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
