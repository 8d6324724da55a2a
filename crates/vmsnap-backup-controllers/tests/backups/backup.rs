//! Backups of a VM to a local repository.
