//! Names of restored PVCs and DataVolumes (`restoreVolumeName`).

use vmsnap_api::snapshot::{VirtualMachineRestore, volume_restore_policy};

use crate::naming::get_name;

/// The name of the PVC (and DataVolume) restored for `volume`, whose original claim was `original_claim`.
pub fn restore_volume_name(restore: &VirtualMachineRestore, volume: &str, original_claim: &str) -> String {
    let overridden = restore
        .spec
        .volume_restore_overrides
        .iter()
        .find(|o| o.volume_name.as_deref() == Some(volume))
        .and_then(|o| o.restore_name.clone())
        .filter(|n| !n.is_empty());
    if let Some(name) = overridden {
        return name;
    }
    match restore.spec.volume_restore_policy.as_deref() {
        Some(volume_restore_policy::IN_PLACE) => original_claim.to_owned(),
        Some(volume_restore_policy::PREFIX_TARGET_NAME) => get_name(&restore.spec.target.name, volume, 63),
        _ => format!("restore-{}-{volume}", restore.metadata.uid.clone().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmsnap_api::snapshot::VolumeRestoreOverride;

    fn restore(policy: Option<&str>) -> VirtualMachineRestore {
        let mut r = VirtualMachineRestore::new("r", Default::default());
        r.metadata.uid = Some("uid-1".into());
        r.spec.target.name = "target".into();
        r.spec.volume_restore_policy = policy.map(Into::into);
        r
    }

    #[test]
    fn each_policy_names_the_volume_as_kubevirt_does() {
        assert_eq!(restore_volume_name(&restore(None), "data", "data-pvc"), "restore-uid-1-data");
        assert_eq!(
            restore_volume_name(&restore(Some("RandomizeNames")), "data", "data-pvc"),
            "restore-uid-1-data"
        );
        assert_eq!(restore_volume_name(&restore(Some("InPlace")), "data", "data-pvc"), "data-pvc");
        assert_eq!(
            restore_volume_name(&restore(Some("PrefixTargetName")), "data", "data-pvc"),
            "target-data"
        );
    }

    #[test]
    fn an_override_wins() {
        let mut r = restore(Some("InPlace"));
        r.spec.volume_restore_overrides = vec![VolumeRestoreOverride {
            volume_name: Some("data".into()),
            restore_name: Some("mine".into()),
            ..Default::default()
        }];
        assert_eq!(restore_volume_name(&r, "data", "data-pvc"), "mine");
        assert_eq!(restore_volume_name(&r, "other", "other-pvc"), "other-pvc");
    }
}
