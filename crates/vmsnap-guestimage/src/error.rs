//! The error of [`ensure_built`](crate::ensure_built).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why the test guest could not be built or loaded from the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A file or directory operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done, such as "create directory".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A host program needed by the build is missing.
    #[error("`{program}` is not installed; install it with `apt-get install {package}`")]
    ProgramMissing {
        /// The program that could not be started.
        program: String,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// A host program ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its standard error.
        stderr: String,
    },

    /// A Debian package whose files go into the guest is not installed on this host.
    #[error("Debian package {package} is not installed; install it with `apt-get install {package}`")]
    PackageNotInstalled {
        /// The package name.
        package: String,
    },

    /// apt does not know the cloud kernel metapackage, or its dependency names no kernel.
    #[error("apt has no usable candidate for {metapackage} ({detail}); run `apt-get update` and try again")]
    KernelNotFound {
        /// The metapackage that was looked up.
        metapackage: &'static str,
        /// What was found instead.
        detail: String,
    },

    /// A host program printed something this builder does not understand.
    #[error("unexpected output from `{command}`: {detail}")]
    UnexpectedOutput {
        /// The command line.
        command: String,
        /// What was wrong with the output.
        detail: String,
    },

    /// A kernel module the guest needs is neither built into the kernel nor shipped as a module.
    #[error("kernel {kernel_release} has no module {module}, built in or loadable")]
    ModuleMissing {
        /// The module name.
        module: String,
        /// The kernel release, such as `6.1.0-56-cloud-amd64`.
        kernel_release: String,
    },

    /// The module dependencies could not be resolved.
    #[error("cannot resolve kernel module dependencies: {0}")]
    ModuleDependencies(String),

    /// A kernel module file could not be read as an ELF object with a `.modinfo` section.
    #[error("cannot read module information of {}: {reason}", path.display())]
    ModuleInfo {
        /// The module file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A manifest could not be written or read back.
    #[error("cannot use image manifest {}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl BuildError {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
