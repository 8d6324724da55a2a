//! `vmsnap completions SHELL`: shell completion scripts.

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `vmsnap completions`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vmsnap completions bash > /etc/bash_completion.d/vmsnap
  vmsnap completions zsh > \"${fpath[1]}/_vmsnap\"
  vmsnap completions fish > ~/.config/fish/completions/vmsnap.fish")]
pub struct CompletionsArgs {
    /// The shell.
    shell: Shell,
}

/// Prints the completion script.
pub fn run(args: CompletionsArgs) -> ExitCode {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "vmsnap", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}
