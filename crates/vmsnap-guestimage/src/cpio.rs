//! Writing a staged directory tree as an initramfs (a `newc` cpio archive).
//!
//! Writing the archive here rather than with the host's `cpio` makes every
//! entry owned by root with a fixed time, whoever builds it, and lets the
//! archive carry `/dev/console` without `mknod` on the host (the kernel opens
//! it for `/init` before devtmpfs is mounted).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// A `newc` archive being written.
pub(crate) struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub(crate) fn new(out: W) -> Self {
        Self { out, written: 0, next_inode: 1 }
    }

    /// Adds every entry under `root`, in sorted order, with paths relative to it.
    pub(crate) fn add_tree(&mut self, root: &Path) -> io::Result<()> {
        self.add_dir_entries(root, Path::new(""))
    }

    fn add_dir_entries(&mut self, root: &Path, dir: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(dir))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let relative = dir.join(name);
            let full = root.join(&relative);
            let metadata = fs::symlink_metadata(&full)?;
            let path = relative.to_string_lossy();
            let permissions = metadata.permissions().mode() & 0o7777;
            if metadata.file_type().is_symlink() {
                let target = fs::read_link(&full)?;
                self.entry(&path, S_IFLNK | 0o777, (0, 0), target.to_string_lossy().as_bytes())?;
            } else if metadata.is_dir() {
                self.entry(&path, S_IFDIR | permissions, (0, 0), &[])?;
                self.add_dir_entries(root, &relative)?;
            } else if metadata.is_file() {
                self.entry(&path, S_IFREG | permissions, (0, 0), &fs::read(&full)?)?;
            } else {
                return Err(io::Error::other(format!(
                    "{} is neither a file, a directory nor a symlink (mode {:o})",
                    full.display(),
                    metadata.mode()
                )));
            }
        }
        Ok(())
    }

    /// Adds a character device node.
    pub(crate) fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        self.entry(path, S_IFCHR | mode, (major, minor), &[])
    }

    /// Writes the trailer and returns the output.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes one entry; `rdev` is the (major, minor) of a device node.
    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let inode = if path == "TRAILER!!!" { 0 } else { self.next_inode };
        self.next_inode += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let fields: [u32; 13] = [
            inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(data.len()).map_err(|_| io::Error::other(format!("{path} is over 4 GiB")))?,
            0, // device major
            0, // device minor
            rdev.0,
            rdev.1,
            u32::try_from(path.len() + 1).map_err(io::Error::other)?,
            0, // check
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(path.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.write(&[0; 3][..padding as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::{Command, Stdio};

    #[test]
    fn host_cpio_lists_and_extracts_what_was_written() {
        let staging = tempfile::tempdir().unwrap();
        fs::create_dir_all(staging.path().join("bin")).unwrap();
        fs::write(staging.path().join("bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(staging.path().join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("hello", staging.path().join("bin/hi")).unwrap();
        let mut writer = CpioWriter::new(Vec::new());
        writer.add_tree(staging.path()).unwrap();
        writer.add_char_device("dev/console", 0o600, 5, 1).unwrap();
        let archive = writer.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);

        let listing = run_cpio(&["-t", "-v"], &archive, staging.path());

        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 4, "{listing}");
        assert!(lines[0].starts_with("drwx") && lines[0].ends_with(" bin"), "{listing}");
        assert!(lines[1].starts_with("-rwxr-xr-x") && lines[1].ends_with(" bin/hello"), "{listing}");
        assert!(lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/hi -> hello"), "{listing}");
        assert!(
            lines[3].starts_with("crw-------")
                && lines[3].contains("5,")
                && lines[3].ends_with("dev/console"),
            "{listing}"
        );
        let out = tempfile::tempdir().unwrap();
        run_cpio(&["-i", "-d", "--quiet", "bin/*"], &archive, out.path());
        assert_eq!(fs::read_to_string(out.path().join("bin/hello")).unwrap(), "#!/bin/sh\necho hi\n");
    }

    fn run_cpio(args: &[&str], archive: &[u8], dir: &Path) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the cpio package is installed");
        child.stdin.take().unwrap().write_all(archive).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }
}
