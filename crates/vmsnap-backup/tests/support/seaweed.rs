//! The shared SeaweedFS test server (`vmsnap_testing::seaweedfs`), with the repository engine's
//! view of it: the S3 configuration and backend of a bucket and prefix.

use vmsnap_backup::{Backend, S3Config};
pub use vmsnap_testing::seaweedfs::{ACCESS_KEY, SECRET_KEY, Seaweed};

/// The engine's view of a test server.
pub trait SeaweedRepository {
    /// The S3 configuration of a bucket and prefix on this server.
    fn s3_config(&self, bucket: &str, prefix: &str) -> S3Config;
    /// A backend on a bucket and prefix of this server.
    fn backend(&self, bucket: &str, prefix: &str) -> Backend;
}

impl SeaweedRepository for Seaweed {
    fn s3_config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            access_key_id: ACCESS_KEY.to_string(),
            secret_access_key: SECRET_KEY.to_string(),
            allow_http: true,
        }
    }

    fn backend(&self, bucket: &str, prefix: &str) -> Backend {
        Backend::s3(&self.s3_config(bucket, prefix)).expect("S3 backend")
    }
}
