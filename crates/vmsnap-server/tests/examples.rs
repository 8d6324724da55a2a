//! Every YAML file in `examples/` is accepted by the API server with kubectl's default (strict)
//! validation.

use vmsnap_testing::TestServer;

#[tokio::test]
async fn every_example_passes_strict_server_side_validation() {
    let server = TestServer::start_with_seed(vmsnap_testing::fixtures::storage_objects()).await.unwrap();
    let k = server.kubectl();
    let dir = format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5);
    for file in files {
        let path = file.display().to_string();
        let out = k.run_async(&["create", "--dry-run=server", "-f", &path]).await;
        assert!(out.ok().contains("created (server dry run)"), "{path}: {out:?}");
    }
}
