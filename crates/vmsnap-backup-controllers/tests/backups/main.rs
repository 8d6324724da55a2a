//! The backup controllers against the real API server (in-process), the real storage controllers
//! and KubeVirt snapshot controller over a layered storage engine in a temporary directory (disks
//! written with `qemu-io`), and repositories in a local directory or a SeaweedFS bucket.

#![allow(missing_docs)] // Test helpers need no rustdoc.

mod backup;
mod bad_input;
mod chunk_size;
mod failure;
mod hang;
mod lifecycle;
mod multi_disk;
mod progress;
mod repository;
mod s3;
#[path = "../../../vmsnap-backup/tests/support/seaweed.rs"]
#[allow(dead_code)]
mod seaweed;
mod support;
