//! From a VMI volume to a disk QEMU can open.
//!
//! `persistentVolumeClaim` and `dataVolume` volumes follow the chain a kubelet
//! and CSI driver would: the DataVolume must have succeeded, its PVC (or the
//! named one) must be `Bound`, its PersistentVolume must be a CSI volume of
//! the local driver, and the volume handle names the storage driver's volume,
//! whose active file QEMU opens. `emptyDisk` and `containerDisk` volumes are
//! files in the VMI's runtime directory that live as long as the VMI.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::kubevirt::{PersistentVolumeClaimInfo, Volume, VolumeStatus};
use vmsnap_storage::{VolumeDriver, VolumeFormat, VolumeId};

use crate::kubevirt::{CSI_DRIVER, condition};
use crate::vmi_status::Problem;
use vmsnap_vmm::{DiskBus, DiskFormat, DiskSpec};

/// Why a volume cannot be attached (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// The PVC or DataVolume does not exist.
    #[error("{kind} {namespace}/{name} does not exist")]
    NotFound {
        /// `PersistentVolumeClaim` or `DataVolume`.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The volume will be usable later (PVC not bound, DataVolume populating).
    #[error("{0}")]
    NotReady(String),
    /// The volume cannot be used by this agent at all.
    #[error("{0}")]
    Unusable(String),
    /// A boot or disk image cannot be resolved.
    #[error("{0}")]
    Image(String),
    /// The Kubernetes API failed while looking the volume up.
    #[error("looking up volume {volume:?} failed: {message}")]
    Api {
        /// The volume.
        volume: String,
        /// The API error.
        message: String,
    },
}

impl VolumeError {
    /// The VMI condition that reports this error (`Synchronized=False` with a reason).
    pub fn problem(&self) -> Problem {
        let reason = match self {
            VolumeError::NotFound { kind: "PersistentVolumeClaim", .. } => condition::REASON_PVC_NOT_FOUND,
            VolumeError::NotFound { .. } | VolumeError::NotReady(_) | VolumeError::Api { .. } => {
                condition::REASON_VOLUME_NOT_READY
            }
            VolumeError::Unusable(_) => condition::REASON_VOLUME_ERROR,
            VolumeError::Image(_) => condition::REASON_IMAGE,
        };
        Problem { reason, message: self.to_string() }
    }
}

/// A PVC-backed volume: the claim and the storage driver's volume behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimVolume {
    /// The PVC name.
    pub claim_name: String,
    /// The storage driver's volume (the PV's CSI volume handle).
    pub volume_id: VolumeId,
    /// The claim details for `volumeStatus`.
    pub info: PersistentVolumeClaimInfo,
}

/// A volume resolved for QEMU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedVolume {
    /// The disk (named after the volume).
    pub disk: DiskSpec,
    /// The claim, for PVC and DataVolume volumes.
    pub claim: Option<ClaimVolume>,
    /// Whether the volume is hotpluggable.
    pub hotplugged: bool,
}

/// The claim a PVC or DataVolume volume uses, and whether it is a DataVolume.
pub fn claim_of(volume: &Volume) -> Option<(&str, bool)> {
    if let Some(pvc) = &volume.persistent_volume_claim {
        return Some((&pvc.claim_name, false));
    }
    volume.data_volume.as_ref().map(|dv| (dv.name.as_str(), true))
}

/// Checks that a DataVolume has been populated.
pub fn check_data_volume(dv: &DataVolume) -> Result<(), VolumeError> {
    let name = dv.metadata.name.as_deref().unwrap_or_default();
    match dv.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some(vmsnap_api::cdi::dv_phase::SUCCEEDED) => Ok(()),
        Some(vmsnap_api::cdi::dv_phase::FAILED) => {
            Err(VolumeError::Unusable(format!("DataVolume {name} failed")))
        }
        Some(phase) => Err(VolumeError::NotReady(format!("DataVolume {name} is {phase}, not Succeeded yet"))),
        None => Err(VolumeError::NotReady(format!("DataVolume {name} has not been populated yet"))),
    }
}

/// The storage driver volume behind a bound PVC and its PV.
pub fn volume_id_of(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<VolumeId, VolumeError> {
    let pv_name = pv.metadata.name.as_deref().unwrap_or_default();
    let claim = pvc.metadata.name.as_deref().unwrap_or_default();
    let csi = pv.spec.as_ref().and_then(|s| s.csi.as_ref()).ok_or_else(|| {
        VolumeError::Unusable(format!(
            "PersistentVolume {pv_name} of PVC {claim} is not a CSI volume; the agent attaches volumes of {CSI_DRIVER} only"
        ))
    })?;
    if csi.driver != CSI_DRIVER {
        return Err(VolumeError::Unusable(format!(
            "PersistentVolume {pv_name} of PVC {claim} belongs to CSI driver {}; the agent attaches volumes of {CSI_DRIVER} only",
            csi.driver
        )));
    }
    VolumeId::new(csi.volume_handle.clone()).map_err(|error| {
        VolumeError::Unusable(format!("PersistentVolume {pv_name} has an invalid volume handle: {error}"))
    })
}

/// The bound PV name of a PVC.
pub fn bound_volume_name(pvc: &PersistentVolumeClaim) -> Result<&str, VolumeError> {
    let claim = pvc.metadata.name.as_deref().unwrap_or_default();
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Bound" {
        return Err(VolumeError::NotReady(format!("PVC {claim} is {phase}, not Bound yet")));
    }
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .ok_or_else(|| VolumeError::NotReady(format!("PVC {claim} is not bound to a PersistentVolume yet")))
}

fn claim_info(pvc: &PersistentVolumeClaim) -> PersistentVolumeClaimInfo {
    let status = pvc.status.as_ref();
    PersistentVolumeClaimInfo {
        claim_name: pvc.metadata.name.clone(),
        access_modes: status.and_then(|s| s.access_modes.clone()).unwrap_or_default(),
        volume_mode: pvc.spec.as_ref().and_then(|s| s.volume_mode.clone()).or(Some("Filesystem".into())),
        capacity: status.and_then(|s| s.capacity.clone()).unwrap_or_default(),
    }
}

/// Looks up everything a PVC or DataVolume volume needs, through the API and the driver.
pub async fn resolve_claim(
    client: &Client,
    driver: &dyn VolumeDriver,
    namespace: &str,
    volume: &Volume,
) -> Result<ResolvedVolume, VolumeError> {
    let (claim, is_data_volume) = claim_of(volume)
        .ok_or_else(|| VolumeError::Unusable(format!("volume {} has no claim", volume.name)))?;
    let api_error =
        |error: kube::Error| VolumeError::Api { volume: volume.name.clone(), message: error.to_string() };
    let not_found =
        |kind| VolumeError::NotFound { kind, namespace: namespace.to_owned(), name: claim.to_owned() };
    if is_data_volume {
        let dvs: Api<DataVolume> = Api::namespaced(client.clone(), namespace);
        let dv = dvs.get_opt(claim).await.map_err(api_error)?.ok_or_else(|| not_found("DataVolume"))?;
        check_data_volume(&dv)?;
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc =
        pvcs.get_opt(claim).await.map_err(api_error)?.ok_or_else(|| not_found("PersistentVolumeClaim"))?;
    let pv_name = bound_volume_name(&pvc)?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get_opt(pv_name).await.map_err(api_error)?.ok_or_else(|| {
        VolumeError::NotReady(format!("PersistentVolume {pv_name} of PVC {claim} does not exist"))
    })?;
    let volume_id = volume_id_of(&pvc, &pv)?;
    let info = driver
        .volume(&volume_id)
        .await
        .map_err(|error| {
            VolumeError::Unusable(format!("the storage driver cannot open volume {volume_id}: {error}"))
        })?
        .ok_or_else(|| {
            VolumeError::Unusable(format!(
                "PersistentVolume {pv_name} names volume {volume_id}, which the storage driver does not have"
            ))
        })?;
    let format = match info.format {
        VolumeFormat::Qcow2 => DiskFormat::Qcow2,
        VolumeFormat::Raw => DiskFormat::Raw,
    };
    Ok(ResolvedVolume {
        disk: DiskSpec::new(volume.name.clone(), info.path, format),
        claim: Some(ClaimVolume { claim_name: claim.to_owned(), volume_id, info: claim_info(&pvc) }),
        hotplugged: volume.is_hotpluggable(),
    })
}

/// A blank qcow2 disk of the VMI, created on first use (KubeVirt's `emptyDisk`).
pub async fn empty_disk(runtime_dir: &Path, volume: &Volume) -> Result<ResolvedVolume, VolumeError> {
    let source =
        volume.empty_disk.as_ref().ok_or_else(|| VolumeError::Unusable("not an emptyDisk".into()))?;
    let size = vmsnap_api::quantity::parse_bytes(&source.capacity.0).map_err(|error| {
        VolumeError::Unusable(format!("emptyDisk {} has an invalid capacity: {error}", volume.name))
    })?;
    let path = runtime_dir.join(format!("empty-{}.qcow2", volume.name));
    if !path.exists() {
        qemu_img(&["create", "-q", "-f", "qcow2"], &path, &[size.to_string()]).await?;
    }
    Ok(ResolvedVolume {
        disk: DiskSpec::new(volume.name.clone(), path, DiskFormat::Qcow2),
        claim: None,
        hotplugged: false,
    })
}

/// Where a `vmsnap.local/<name>:<tag>` container disk image lives in the image cache.
pub fn container_disk_dir(image_cache: &Path, image: &str) -> Result<PathBuf, VolumeError> {
    let unresolvable = || {
        VolumeError::Image(format!(
            "container disk image {image:?} cannot be pulled: the embedded agent only resolves vmsnap.local/<name>[:<tag>] images from {}",
            image_cache.join("containerdisks").display()
        ))
    };
    let rest = image.strip_prefix("vmsnap.local/").ok_or_else(unresolvable)?;
    let (name, tag) = rest.split_once(':').unwrap_or((rest, "latest"));
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    if !valid(name) || !valid(tag) {
        return Err(unresolvable());
    }
    Ok(image_cache.join("containerdisks").join(name).join(tag))
}

/// An ephemeral overlay over a local container disk image (KubeVirt's `containerDisk`).
pub async fn container_disk(
    image_cache: &Path,
    runtime_dir: &Path,
    volume: &Volume,
) -> Result<ResolvedVolume, VolumeError> {
    let source =
        volume.container_disk.as_ref().ok_or_else(|| VolumeError::Unusable("not a containerDisk".into()))?;
    let dir = container_disk_dir(image_cache, &source.image)?;
    let base = ["disk.qcow2", "disk.img", "disk.raw"]
        .iter()
        .map(|file| dir.join(file))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            VolumeError::Image(format!(
                "container disk image {:?} is not in the image cache: put its disk at {}/disk.qcow2 (or disk.img)",
                source.image,
                dir.display()
            ))
        })?;
    let base_format = if base.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    let overlay = runtime_dir.join(format!("container-{}.qcow2", volume.name));
    if !overlay.exists() {
        let backing = base.to_string_lossy().into_owned();
        qemu_img(&["create", "-q", "-f", "qcow2", "-F", base_format, "-b", &backing], &overlay, &[]).await?;
    }
    Ok(ResolvedVolume {
        disk: DiskSpec::new(volume.name.clone(), overlay, DiskFormat::Qcow2),
        claim: None,
        hotplugged: false,
    })
}

async fn qemu_img(args: &[&str], path: &Path, trailing: &[String]) -> Result<(), VolumeError> {
    let output = tokio::process::Command::new("qemu-img")
        .args(args)
        .arg(path)
        .args(trailing)
        .output()
        .await
        .map_err(|error| VolumeError::Unusable(format!("could not run qemu-img: {error}")))?;
    if !output.status.success() {
        return Err(VolumeError::Unusable(format!(
            "qemu-img could not create {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The `volumeStatus` entry of an attached volume; `target` is its guest device (`vda`...).
pub fn volume_status(volume: &ResolvedVolume, target: &str) -> VolumeStatus {
    let name = volume.disk.name.clone();
    VolumeStatus {
        target: target.to_owned(),
        phase: volume.hotplugged.then(|| "Ready".to_owned()),
        reason: volume.hotplugged.then(|| "VolumeReady".to_owned()),
        message: volume.hotplugged.then(|| format!("Successfully attach hotplugged volume {name} to VM")),
        persistent_volume_claim_info: volume.claim.as_ref().map(|c| c.info.clone()),
        hotplug_volume: volume.hotplugged.then(|| serde_json::json!({})),
        size: None,
        name,
    }
}

/// The guest device name of the `index`th disk on `bus`, as Linux names them
/// (`vda`, ..., `vdz`, `vdaa`, ...; `sda`, ... for SCSI and SATA disks).
pub fn target_name(bus: DiskBus, index: usize) -> String {
    let mut name = String::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        name.insert(0, char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    format!("{}{name}", bus.device_prefix())
}

/// The guest device names of `disks` launched together, in disk order: each
/// bus's disks are numbered apart (SCSI and SATA share the `sd` names).
pub fn target_names<'a>(disks: impl IntoIterator<Item = &'a DiskSpec>) -> Vec<String> {
    let mut used: Vec<String> = Vec::new();
    for disk in disks {
        let prefix = disk.bus.device_prefix();
        let index = used.iter().filter(|t| t.starts_with(prefix)).count();
        used.push(target_name(disk.bus, index));
    }
    used
}

/// Makes `controller` reconcile an object again when a PVC or DataVolume that one of its volumes
/// (`volumes_of`) claims changes: a volume waiting for its claim to bind, or its DataVolume to
/// finish importing, is picked up at once.
pub fn watch_claims<K>(
    controller: kube::runtime::Controller<K>,
    client: kube::Client,
    volumes_of: fn(&K) -> &[Volume],
) -> kube::runtime::Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use kube::ResourceExt;
    use kube::api::Api;
    use kube::runtime::watcher;
    let (claims, dvs) = (controller.store(), controller.store());
    controller
        .watches(
            Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            move |pvc| claim_users(&claims, volumes_of, pvc.namespace().as_deref(), &pvc.name_any()),
        )
        .watches(Api::<vmsnap_api::cdi::DataVolume>::all(client), watcher::Config::default(), move |dv| {
            claim_users(&dvs, volumes_of, dv.namespace().as_deref(), &dv.name_any())
        })
}

/// The objects in `store` whose volumes use claim (or DataVolume) `name` in `namespace`.
fn claim_users<K>(
    store: &kube::runtime::reflector::Store<K>,
    volumes_of: fn(&K) -> &[Volume],
    namespace: Option<&str>,
    name: &str,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    use kube::ResourceExt;
    store
        .state()
        .iter()
        .filter(|object| object.namespace().as_deref() == namespace)
        .filter(|object| {
            volumes_of(object).iter().any(|v| claim_of(v).is_some_and(|(claim, _)| claim == name))
        })
        .map(|object| kube::runtime::reflector::ObjectRef::from_obj(object.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        CSIPersistentVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use vmsnap_api::cdi::DataVolumeStatus;

    use super::*;

    fn pvc(phase: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
            spec: Some(PersistentVolumeClaimSpec {
                volume_name: volume.map(Into::into),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn pv(driver: &str, handle: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta { name: Some("pv-data".into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                csi: Some(CSIPersistentVolumeSource {
                    driver: driver.into(),
                    volume_handle: handle.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_bound_claim_leads_to_the_local_drivers_volume() {
        let claim = pvc("Bound", Some("pv-data"));
        assert_eq!(bound_volume_name(&claim).unwrap(), "pv-data");
        assert_eq!(volume_id_of(&claim, &pv(CSI_DRIVER, "pvc-123")).unwrap().as_str(), "pvc-123");
    }

    #[test]
    fn unbound_claims_wait_and_foreign_volumes_are_refused() {
        let waiting = bound_volume_name(&pvc("Pending", None)).unwrap_err();
        assert_eq!(waiting.problem().reason, "VolumeNotReady");
        assert!(waiting.to_string().contains("PVC data is Pending"), "{waiting}");
        let claim = pvc("Bound", Some("pv-data"));
        let foreign = volume_id_of(&claim, &pv("ebs.csi.aws.com", "vol-1")).unwrap_err();
        assert!(foreign.to_string().contains("ebs.csi.aws.com"), "{foreign}");
        assert!(matches!(volume_id_of(&claim, &pv(CSI_DRIVER, "../etc")), Err(VolumeError::Unusable(_))));
        let missing =
            VolumeError::NotFound { kind: "PersistentVolumeClaim", namespace: "ns".into(), name: "x".into() };
        assert_eq!(missing.problem().reason, "FailedPvcNotFound");
    }

    #[test]
    fn data_volumes_must_have_succeeded() {
        let mut dv = DataVolume::new("dv", Default::default());
        assert!(matches!(check_data_volume(&dv), Err(VolumeError::NotReady(_))));
        dv.status = Some(DataVolumeStatus { phase: Some("ImportInProgress".into()), ..Default::default() });
        assert!(check_data_volume(&dv).unwrap_err().to_string().contains("ImportInProgress"));
        dv.status = Some(DataVolumeStatus { phase: Some("Failed".into()), ..Default::default() });
        assert!(matches!(check_data_volume(&dv), Err(VolumeError::Unusable(_))));
        dv.status = Some(DataVolumeStatus { phase: Some("Succeeded".into()), ..Default::default() });
        assert!(check_data_volume(&dv).is_ok());
    }

    #[test]
    fn only_local_container_disk_images_resolve() {
        let cache = Path::new("/cache");
        assert_eq!(
            container_disk_dir(cache, "vmsnap.local/alpine:3.20").unwrap(),
            Path::new("/cache/containerdisks/alpine/3.20")
        );
        assert_eq!(
            container_disk_dir(cache, "vmsnap.local/alpine").unwrap(),
            Path::new("/cache/containerdisks/alpine/latest")
        );
        let error = container_disk_dir(cache, "quay.io/containerdisks/fedora:40").unwrap_err();
        assert!(
            matches!(&error, VolumeError::Image(m) if m.contains("quay.io/containerdisks/fedora")),
            "{error}"
        );
        assert!(container_disk_dir(cache, "vmsnap.local/../x").is_err());
    }

    #[test]
    fn targets_are_named_like_linux_names_virtio_disks() {
        let names: Vec<String> =
            [0, 1, 25, 26, 27].into_iter().map(|i| target_name(DiskBus::Virtio, i)).collect();
        assert_eq!(names, ["vda", "vdb", "vdz", "vdaa", "vdab"]);
    }

    #[test]
    fn scsi_and_sata_disks_share_the_sd_names() {
        let disk = |name: &str, bus| DiskSpec { bus, ..DiskSpec::new(name, "/v", DiskFormat::Qcow2) };
        let disks = [
            disk("a", DiskBus::Virtio),
            disk("b", DiskBus::Scsi),
            disk("c", DiskBus::Virtio),
            disk("d", DiskBus::Sata),
        ];
        assert_eq!(target_names(&disks), ["vda", "sda", "vdb", "sdb"]);
    }
}
