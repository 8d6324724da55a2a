//! Finding the shared libraries (and the dynamic loader) a host program needs.

use std::path::{Path, PathBuf};

use crate::BuildError;
use crate::command::HostCommand;

/// The libraries `program` loads, as absolute host paths, the loader included.
pub(crate) fn libraries(program: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let command = HostCommand::new("ldd", "libc-bin").arg(program);
    let line = command.line().to_owned();
    let stdout = command.stdout()?;
    parse(&String::from_utf8_lossy(&stdout))
        .map_err(|detail| BuildError::UnexpectedOutput { command: line, detail })
}

/// Parses ldd's output: `libx.so.1 => /lib/libx.so.1 (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`.
/// The vDSO has no file and is skipped; an unresolved library is an error.
fn parse(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!("{} is not found", name.trim()));
                }
                target
            }
            None => line,
        };
        let path = target.split(" (0x").next().unwrap_or(target).trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        } else if !path.starts_with("linux-vdso") && !path.is_empty() {
            return Err(format!("cannot understand the line {line:?}"));
        }
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_and_the_loader_are_listed_and_the_vdso_is_not() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd4b1f2000)\n\
            \tlibglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x00007f1ec4206000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1ec3f3c000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f1ec448d000)\n";
        let libraries = parse(text).unwrap();
        assert_eq!(
            libraries,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libglib-2.0.so.0"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_missing_library_is_an_error() {
        let error = parse("\tlibnuma.so.1 => not found\n").unwrap_err();
        assert!(error.contains("libnuma.so.1"), "{error}");
    }

    #[test]
    fn the_host_loader_is_found_for_a_real_program() {
        let libraries = libraries(Path::new("/bin/sh")).unwrap();
        assert!(libraries.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "{libraries:?}");
    }
}
