//! Running the host programs the build relies on (apt, dpkg, ldd, gcc, decompressors).

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::BuildError;

/// A host command that reports failures as [`BuildError`]s naming the command line.
pub(crate) struct HostCommand {
    command: Command,
    line: String,
    program: String,
    package: &'static str,
}

impl HostCommand {
    /// A command running `program`, which the Debian package `package` provides.
    pub(crate) fn new(program: &str, package: &'static str) -> Self {
        let mut command = Command::new(program);
        // Parsed output must not depend on the caller's locale.
        command.env("LC_ALL", "C").stdin(Stdio::null());
        Self { command, line: program.to_owned(), program: program.to_owned(), package }
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.line.push(' ');
        self.line.push_str(&arg.as_ref().to_string_lossy());
        self.command.arg(arg);
        self
    }

    /// Appends several arguments.
    pub(crate) fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// Runs the command in `dir`.
    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// The command line, for error messages.
    pub(crate) fn line(&self) -> &str {
        &self.line
    }

    /// Runs the command and returns its standard output; a non-zero exit is an error.
    pub(crate) fn stdout(self) -> Result<Vec<u8>, BuildError> {
        let (line, output) = self.run()?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(BuildError::CommandFailed {
                command: line,
                status: output.status,
                stderr: tail(&output.stderr),
            })
        }
    }

    /// Runs the command and returns its output whatever the exit status.
    pub(crate) fn output(self) -> Result<Output, BuildError> {
        self.run().map(|(_, output)| output)
    }

    fn run(mut self) -> Result<(String, Output), BuildError> {
        match self.command.output() {
            Ok(output) => Ok((self.line, output)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(BuildError::ProgramMissing { program: self.program, package: self.package })
            }
            Err(source) => Err(BuildError::Io { action: "run", path: self.program.into(), source }),
        }
    }
}

/// The last few lines of a program's error output, enough to explain a failure.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_reports_its_line_and_error_output() {
        let error = HostCommand::new("sh", "dash")
            .args(["-c", "echo one >&2; echo two >&2; exit 3"])
            .stdout()
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("sh -c echo one"), "{message}");
        assert!(message.contains("one / two"), "{message}");
    }

    #[test]
    fn missing_program_names_the_package_to_install() {
        let error = HostCommand::new("vmsnap-no-such-program", "some-package").stdout().unwrap_err();
        assert!(matches!(error, BuildError::ProgramMissing { package: "some-package", .. }));
    }
}
