//! The `vmsnap` binary: the embedded control plane (`serve`), the controllers alone (`controller`),
//! and the user commands.

// Messages go through `errln!`/`err!`, which a closed stderr cannot turn into a panic.
#![deny(clippy::print_stderr)]

/// `println!` for what the user commands print: a reader that went away (`vmsnap snapshot list |
/// head -1`) ends the command quietly (`cmd::output::write_stdout`) instead of a panic on EPIPE.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` for the binary's messages: a stderr that is closed or whose reader went away
/// (`vmsnap ... 2>&-`, a log pipe that died) loses the message instead of panicking, so the
/// command still ends with its own exit code (`cmd::output::write_stderr`).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cmd::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` likewise.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cmd::output::write_stderr(format_args!($($arg)*))
    };
}

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
