//! The CRDs in `deploy/crds/` are generated from the Rust types: this golden test keeps them in sync
//! (`VMSNAP_UPDATE_GOLDEN=1 cargo test -p vmsnap-api --test crds` rewrites them), and KubeVirt's own
//! example objects validate against their schemas.

use std::path::PathBuf;

use vmsnap_api::registry::registry;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

fn generated() -> Vec<(String, String)> {
    registry()
        .all()
        .iter()
        .filter(|t| matches!(t.group, "snapshot.kubevirt.io" | "schedule.vmsnap.io" | "backup.vmsnap.io"))
        .map(|t| {
            let crd = t.crd.clone().expect("snapshot and schedule kinds are CRDs");
            let yaml = serde_norway::to_string(&crd).expect("a CRD serializes");
            (
                format!("{}.yaml", t.plural),
                format!(
                    "# Generated from vmsnap-api; do not edit (see crates/vmsnap-api/tests/crds.rs).\n{yaml}"
                ),
            )
        })
        .collect()
}

#[test]
fn deploy_crds_match_the_rust_types() {
    let update = std::env::var("VMSNAP_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    for (file, yaml) in generated() {
        let path = deploy_dir().join(&file);
        if update {
            std::fs::write(&path, &yaml).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing; run with VMSNAP_UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            on_disk, yaml,
            "{file} is out of date; run `VMSNAP_UPDATE_GOLDEN=1 cargo test -p vmsnap-api --test crds` and review the diff"
        );
    }
}

#[test]
fn the_crds_serve_both_versions_with_v1beta1_stored_and_kubevirts_names() {
    let kubevirts = generated().into_iter().filter(|(_, yaml)| yaml.contains("group: snapshot.kubevirt.io"));
    for (_, yaml) in kubevirts {
        let crd: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let versions: Vec<(String, bool, bool)> = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    v["served"].as_bool().unwrap(),
                    v["storage"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(versions, vec![("v1beta1".into(), true, true), ("v1alpha1".into(), true, false)]);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["categories"], serde_json::json!(["all"]));
        for v in crd["spec"]["versions"].as_array().unwrap() {
            assert!(v["subresources"]["status"].is_object());
        }
    }
}

#[test]
fn the_schedule_crd_is_vmsnaps_own_group_at_v1alpha1_with_a_status() {
    let (_, yaml) = generated()
        .into_iter()
        .find(|(file, _)| file == "virtualmachinesnapshotschedules.yaml")
        .expect("the schedule CRD is generated");
    let crd: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(crd["metadata"]["name"], "virtualmachinesnapshotschedules.schedule.vmsnap.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let versions = crd["spec"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (&versions[0]["name"], &versions[0]["storage"]),
        (&serde_json::json!("v1alpha1"), &serde_json::json!(true))
    );
    assert!(versions[0]["subresources"]["status"].is_object());
}
