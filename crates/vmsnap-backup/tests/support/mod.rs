//! Shared test support: disk images and a SeaweedFS server.
#![allow(dead_code)]

pub mod disk;
pub mod seaweed;
