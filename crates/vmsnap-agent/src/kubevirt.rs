//! Names and defaults the agent shares with KubeVirt (finalizers, labels,
//! annotations, reasons), and the few defaults that are the agent's own.

use std::time::Duration;

use uuid::Uuid;

/// The finalizer the agent keeps on every VMI it runs, so that deleting a VMI
/// shuts its guest down before the object goes (KubeVirt's `VirtualMachineInstanceFinalizer`).
pub const VMI_FINALIZER: &str = "foregroundDeleteVirtualMachine";

/// The label naming the VM a VMI was created for.
pub const VM_LABEL: &str = "kubevirt.io/vm";

/// The annotation carrying the VM generation a VMI was created from.
pub const VM_GENERATION_ANNOTATION: &str = "kubevirt.io/vm-generation";

/// The CSI driver whose volume handles are volumes of the local storage driver.
pub const CSI_DRIVER: &str = "local.storage.vmsnap.io";

/// KubeVirt's namespace for firmware UUIDs derived from VM names (`uuid.NewSHA1(ns, name)`).
pub const FIRMWARE_UUID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1a24a1_4061_4607_8bf4_a3963d0c5895);

/// How long a guest gets to power off after the ACPI button before QEMU is
/// killed, when the VMI does not say (`terminationGracePeriodSeconds`).
/// KubeVirt's default is 30 s; the test guest powers off in well under a
/// second, so the agent's default is shorter.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Guest memory when the VMI gives none (`domain.memory.guest`, `resources.requests.memory`).
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

/// The key of a start request's data asking for a paused start (`StartRequestDataPausedKey`).
pub const START_PAUSED_KEY: &str = "paused";

/// The value of [`START_PAUSED_KEY`] asking for a paused start.
pub const START_PAUSED_TRUE: &str = "true";

/// `spec.startStrategy` that launches the vCPUs paused.
pub const START_STRATEGY_PAUSED: &str = "Paused";

/// State change request actions (`status.stateChangeRequests[].action`).
pub mod request {
    /// Start the VM.
    pub const START: &str = "Start";
    /// Stop the VMI whose uid the request names.
    pub const STOP: &str = "Stop";
}

/// The field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "vmsnap-agent";

/// The controller name on the agent's events (KubeVirt's node component).
pub const REPORTER: &str = "virt-handler";

/// The version the agent reports as `launcherContainerImageVersion`.
pub fn launcher_version() -> String {
    format!("vmsnap.local/virt-launcher:{}", env!("CARGO_PKG_VERSION"))
}

/// The firmware UUID KubeVirt derives for a VM without `firmware.uuid`.
pub fn firmware_uuid(vm_name: &str) -> Uuid {
    Uuid::new_v5(&FIRMWARE_UUID_NAMESPACE, vm_name.as_bytes())
}

/// Printable statuses of a VirtualMachine (`status.printableStatus`).
pub mod printable {
    /// No VMI and none expected.
    pub const STOPPED: &str = "Stopped";
    /// A DataVolume of the VM is being populated.
    pub const PROVISIONING: &str = "Provisioning";
    /// The VM should run but a PVC of it is not bound yet.
    pub const WAITING_FOR_VOLUME_BINDING: &str = "WaitingForVolumeBinding";
    /// The VMI exists and its guest is being started.
    pub const STARTING: &str = "Starting";
    /// The guest runs.
    pub const RUNNING: &str = "Running";
    /// The guest's vCPUs are paused.
    pub const PAUSED: &str = "Paused";
    /// The VMI is being shut down.
    pub const STOPPING: &str = "Stopping";
    /// The VM itself is being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// Starts keep failing; the next one is delayed.
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    /// The VMI cannot be placed on this node.
    pub const UNSCHEDULABLE: &str = "ErrorUnschedulable";
    /// A PVC of the VM does not exist.
    pub const PVC_NOT_FOUND: &str = "ErrorPvcNotFound";
    /// A DataVolume of the VM failed.
    pub const DATA_VOLUME_ERROR: &str = "DataVolumeError";
    /// The boot or disk image cannot be resolved.
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    /// None of the above.
    pub const UNKNOWN: &str = "Unknown";
}

/// Condition types and reasons, on VMs and VMIs.
pub mod condition {
    /// The VMI runs its guest (VMI), or the VM's VMI does (VM).
    pub const READY: &str = "Ready";
    /// The guest agent answers.
    pub const AGENT_CONNECTED: &str = "AgentConnected";
    /// The vCPUs are paused.
    pub const PAUSED: &str = "Paused";
    /// The VM controller failed to act on the VM.
    pub const FAILURE: &str = "Failure";
    /// The VMI could not be synchronised with its host (volumes, images).
    pub const SYNCHRONIZED: &str = "Synchronized";
    /// The VMI is (not) placed on a node.
    pub const POD_SCHEDULED: &str = "PodScheduled";

    /// `Paused` reason when the pause subresource paused the VMI.
    pub const REASON_PAUSED_BY_USER: &str = "PausedByUser";
    /// `Paused` reason when QEMU stopped the VMI because a disk request failed (e.g. a full disk).
    pub const REASON_PAUSED_IO_ERROR: &str = "PausedIOError";
    /// `Ready` reason on a VM without a VMI.
    pub const REASON_VMI_NOT_EXISTS: &str = "VMINotExists";
    /// `Ready` reason on a VM whose VMI has no `Ready` condition yet.
    pub const REASON_VMI_CONDITION_MISSING: &str = "VMIConditionMissing";
    /// `Synchronized` reason: a PVC of the VMI does not exist.
    pub const REASON_PVC_NOT_FOUND: &str = "FailedPvcNotFound";
    /// `Synchronized` reason: a volume is not ready yet (unbound PVC, DataVolume in progress).
    pub const REASON_VOLUME_NOT_READY: &str = "VolumeNotReady";
    /// `Synchronized` reason: a volume cannot be used at all.
    pub const REASON_VOLUME_ERROR: &str = "FailedVolume";
    /// `Synchronized` reason: the kernel boot or container disk image cannot be resolved.
    pub const REASON_IMAGE: &str = "ErrImagePull";
    /// `Synchronized` reason: QEMU refused the VM.
    pub const REASON_LAUNCH_FAILED: &str = "FailedLaunch";
    /// `PodScheduled` reason: the VMI cannot run on this node.
    pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
    /// `Failure` reason: creating the VMI failed.
    pub const REASON_FAILED_CREATE: &str = "FailedCreate";
    /// `Failure` reason: deleting the VMI failed.
    pub const REASON_FAILED_DELETE: &str = "FailedDelete";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firmware_uuid_is_kubevirts_sha1_uuid_of_the_vm_name() {
        // uuid.uuid5(UUID("6a1a24a1-4061-4607-8bf4-a3963d0c5895"), "testvm") in Python.
        assert_eq!(firmware_uuid("testvm").to_string(), "5a9fc181-957e-5c32-9e5a-2de5e9673531");
        assert_eq!(firmware_uuid("testvm"), firmware_uuid("testvm"));
        assert_ne!(firmware_uuid("testvm"), firmware_uuid("other"));
    }
}
