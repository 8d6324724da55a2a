use std::path::PathBuf;

use super::*;

fn id<T: std::str::FromStr>(value: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    value.parse().unwrap()
}

fn layer(name: &str, backing: Option<&str>, sealed: bool) -> (LayerId, Layer) {
    let layer_id: LayerId = id(name);
    let file = layer_file_name(&layer_id);
    (layer_id, Layer { file, backing: backing.map(id), size_bytes: 16 << 20, sealed })
}

/// base <- snap1 <- active (volume disk0); snapshot snap-1 is layer snap1.
fn example() -> Manifest {
    let mut manifest = Manifest::empty();
    manifest.layers.extend([
        layer("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a", None, true),
        layer("1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b", Some("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"), true),
        layer("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c", Some("1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b"), false),
    ]);
    manifest.volumes.insert(
        id("disk0"),
        Volume { active_layer: id("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c"), size_bytes: 16 << 20 },
    );
    manifest.snapshots.insert(
        id("snap-1"),
        Snapshot {
            layer: id("1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b"),
            source_volume: id("disk0"),
            size_bytes: 16 << 20,
            created_at: "2025-01-02T03:04:05.678Z".parse().unwrap(),
        },
    );
    manifest
}

/// [`example`] during a live switch: overlay 3d3d (over the active layer) is pending.
fn example_with_pending_overlay() -> Manifest {
    let mut manifest = example();
    manifest.layers.extend([layer(
        "3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d",
        Some("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c"),
        false,
    )]);
    manifest
        .intents
        .push(Intent::LiveSwitch { volume: id("disk0"), overlay: id("3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d3d") });
    manifest
}

#[test]
fn the_manifest_format_matches_its_golden_file() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/layered-manifest-v1.json");
    let manifest = example_with_pending_overlay();
    manifest.validate().unwrap();
    let rendered = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
    if std::env::var("VMSNAP_BLESS").as_deref() == Ok("1") {
        std::fs::write(&golden, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file (regenerate with VMSNAP_BLESS=1)");
    assert_eq!(rendered, expected, "the persisted format changed: review, then bless with VMSNAP_BLESS=1");
    assert_eq!(serde_json::from_str::<Manifest>(&expected).unwrap(), manifest);
}

#[test]
fn unknown_members_are_rejected_rather_than_dropped_on_the_next_commit() {
    let mut value = serde_json::to_value(example()).unwrap();
    value["volumes"]["disk0"]["encrypted"] = true.into();
    let error = serde_json::from_value::<Manifest>(value).unwrap_err();
    assert!(error.to_string().contains("unknown field `encrypted`"), "{error}");
}

#[test]
fn every_layer_of_a_volume_or_snapshot_chain_is_reachable() {
    let manifest = example();
    assert_eq!(manifest.reachable().len(), 3);
    assert_eq!(manifest.chain(&id("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c")).len(), 3);
}

#[test]
fn a_snapshot_keeps_its_chain_after_its_volume_is_deleted() {
    let mut manifest = example();
    manifest.volumes.clear();
    let removed: Vec<LayerId> = manifest.remove_unreachable().into_iter().map(|(id, _)| id).collect();
    assert_eq!(removed, vec![id::<LayerId>("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c")]);
    assert_eq!(manifest.layers.len(), 2);
    manifest.validate().unwrap();
}

#[test]
fn deleting_a_snapshot_keeps_the_layer_its_volume_is_backed_by() {
    let mut manifest = example();
    manifest.snapshots.clear();
    assert!(manifest.remove_unreachable().is_empty());
    manifest.validate().unwrap();
}

#[test]
fn deleting_everything_frees_every_layer() {
    let mut manifest = example();
    manifest.snapshots.clear();
    manifest.volumes.clear();
    assert_eq!(manifest.remove_unreachable().len(), 3);
    assert!(manifest.layers.is_empty());
}

#[test]
fn a_pending_overlay_is_reachable_until_its_intent_is_resolved() {
    let mut manifest = example_with_pending_overlay();
    manifest.validate().unwrap();
    assert!(manifest.remove_unreachable().is_empty());
}

/// A way to break a valid manifest.
type Breakage = fn(&mut Manifest);

#[test]
fn validation_names_the_broken_invariant() {
    let cases: Vec<(Breakage, &str)> = vec![
        (
            |m| m.layers.get_mut(&id("1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b")).unwrap().sealed = false,
            "which is not sealed",
        ),
        (
            |m| m.layers.get_mut(&id("2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c")).unwrap().sealed = true,
            "which is sealed",
        ),
        (
            |m| {
                m.layers.get_mut(&id("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")).unwrap().backing =
                    Some(id("1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b"))
            },
            "has a cycle",
        ),
        (|m| drop(m.layers.remove(&id("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a"))), "which does not exist"),
        (
            |m| {
                let volume = m.volumes[&id("disk0")].clone();
                m.volumes.insert(id("disk1"), volume);
            },
            "must have exactly one writer, has 2",
        ),
        (|m| m.volumes.get_mut(&id("disk0")).unwrap().size_bytes = 1, "has 1 bytes but its active layer has"),
        (
            |m| m.layers.get_mut(&id("0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a")).unwrap().file = "../x".into(),
            "has file \"../x\"",
        ),
        (|m| m.intents.push(Intent::Resize { volume: id("nope"), size_bytes: 1 }), "names volume nope"),
    ];
    for (break_it, expected) in cases {
        let mut manifest = example();
        break_it(&mut manifest);
        let error = manifest.validate().unwrap_err();
        assert!(error.contains(expected), "{error:?} should contain {expected:?}");
    }
}
