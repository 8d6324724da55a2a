//! Context "With a more complicated VM" / "with cross namespace clone ability": VMs that boot
//! from a DataVolume cloned (host-assisted) from a DataVolume in another namespace, restored
//! after the source, or its namespace, is gone.

use serde_json::{Value, json};

use super::flows::*;
use super::items;
use crate::kubevirt_support::guest::Image;
use crate::kubevirt_support::libstorage::*;
use crate::kubevirt_support::libvmi::*;
use crate::kubevirt_support::*;

/// The `BeforeEach`'s objects.
struct Source {
    /// The StorageClass forced to host-assisted clones.
    storage_class: String,
    /// The DataVolume to clone, in the alternative namespace.
    dv: Value,
}

/// The `BeforeEach`: a copy of the snapshot StorageClass that forces host-assisted clones, an
/// imported DataVolume in the alternative namespace, and the RBAC that lets the test namespace
/// clone it (`libstorage.GoldenImageRBAC`).
async fn source(ctx: &Ctx) -> Source {
    let alternative = ctx.cluster.in_namespace(ALTERNATIVE_NAMESPACE);
    let mut class = ctx.cluster.get(STORAGE_CLASS, SNAPSHOT_STORAGE_CLASS).await;
    class["metadata"] = json!({
        "generateName": format!("{SNAPSHOT_STORAGE_CLASS}-force-host-assisted"),
        "labels": {format!("test.kubevirt.io/{TEST_NAMESPACE}"): ""},
        "annotations": {"cdi.kubevirt.io/clone-strategy": "copy"}
    });
    let class = ctx.cluster.create(STORAGE_CLASS, &class).await;
    let storage_class = name_of(&class);

    let dv = DataVolume::new()
        .with_import_source(&Image::AlpineTestTooling.import_url(&ctx.cluster))
        .with_storage(&storage_class, None)
        .with_force_bind_annotation();
    let dv = alternative.create(DV, &dv.0).await;
    wait_dv_succeeded(&alternative, &name_of(&dv), secs(180)).await;

    let name = format!("golden-rbac-{}", rand_string(12));
    let role = json!({
        "metadata": {"name": name, "namespace": ALTERNATIVE_NAMESPACE},
        "rules": [{"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes/source"], "verbs": ["create"]}]
    });
    alternative.create(ROLE, &role).await;
    let binding = json!({
        "metadata": {"name": name, "namespace": ALTERNATIVE_NAMESPACE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    });
    alternative.create(ROLE_BINDING, &binding).await;
    Source { storage_class, dv }
}

/// `checkCloneAnnotations`: the VM's PVC has the clone annotations of the pre-populator flows
/// (`k8s.io/CloneRequest`, `k8s.io/CloneOf`) exactly when `should_exist`; a PVC populated
/// through `dataSourceRef` is not checked.
async fn check_clone_annotations(cluster: &Cluster, vm: &Value, should_exist: bool) {
    let mut pvc_name = String::new();
    for volume in items(&vm["spec"]["template"]["spec"]["volumes"]) {
        let name =
            volume["persistentVolumeClaim"]["claimName"].as_str().or(volume["dataVolume"]["name"].as_str());
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            assert_eq!(pvc_name, "", "one PVC volume");
            pvc_name = name.to_owned();
        }
    }
    let pvc = cluster.get(PVC, &pvc_name).await;
    if !pvc["spec"]["dataSourceRef"].is_null() {
        // "These annotations only exist pre-k8s-populators flows"
        return;
    }
    for annotation in ["k8s.io/CloneRequest", "k8s.io/CloneOf"] {
        let present = !pvc["metadata"]["annotations"][annotation].is_null();
        assert_eq!(present, should_exist, "annotation {annotation} on PVC {pvc_name}: {:#}", pvc["metadata"]);
    }
}

/// The VM of the context restored offline to a table entry's target, whose PVC is no clone: it
/// has no clone annotations.
async fn restore_without_clone_annotations(ctx: &mut Ctx, restore_to_new_vm: bool) {
    let target = ctx.target_vm_name(restore_to_new_vm);
    ctx.do_restore(ROOT, OFFLINE, &target).await;
    let target_vm = ctx.target_vm(restore_to_new_vm).clone();
    check_clone_annotations(&ctx.cluster, &target_vm, false).await;
}

/// `createNetworkCloneVMFromSource`.
fn create_network_clone_vm_from_source(source: &Source) -> Value {
    let dv = DataVolume::new()
        .with_pvc_source(ALTERNATIVE_NAMESPACE, &name_of(&source.dv))
        .with_storage(&source.storage_class, Some(""));
    let vmi = Vmi::render_with_data_volume(&dv.name()).with_cloud_init_no_cloud();
    with_data_volume_template(new_virtual_machine(vmi), &dv.0)
}

/// `DescribeTable("should restore a vm that boots from a network cloned datavolumetemplate", ...)`.
async fn network_cloned_datavolumetemplate(
    restore_to_new_vm: bool,
    delete_source_pvc: bool,
    delete_source_namespace: bool,
) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let source = source(&ctx).await;
    ctx.create_and_start_vm(create_network_clone_vm_from_source(&source)).await;
    check_clone_annotations(&ctx.cluster, &ctx.vm, true).await;
    if delete_source_namespace {
        ctx.cluster.delete(NAMESPACE, ALTERNATIVE_NAMESPACE).await;
        eventually("the source namespace to be gone", secs(60), POLL, async || {
            match ctx.cluster.get_opt(NAMESPACE, ALTERNATIVE_NAMESPACE).await {
                None => Ok(()),
                Some(ns) => Err(status_of(&ns)),
            }
        })
        .await;
    } else if delete_source_pvc {
        ctx.cluster.in_namespace(ALTERNATIVE_NAMESPACE).delete(DV, &name_of(&source.dv)).await;
    }
    restore_without_clone_annotations(&mut ctx, restore_to_new_vm).await;
}

table_entries! {
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to the same VM"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_the_same_vm => network_cloned_datavolumetemplate(false, false, false);
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to a new VM"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_a_new_vm => network_cloned_datavolumetemplate(true, false, false);
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to the same VM, no source pvc"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_the_same_vm_no_source_pvc => network_cloned_datavolumetemplate(false, true, false);
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to a new VM, no source pvc"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_a_new_vm_no_source_pvc => network_cloned_datavolumetemplate(true, true, false);
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to the same VM, no source namespace"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_the_same_vm_no_source_namespace => network_cloned_datavolumetemplate(false, false, true);
    /// "should restore a vm that boots from a network cloned datavolumetemplate" / Entry "to a new VM, no source namespace"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolumetemplate_to_a_new_vm_no_source_namespace => network_cloned_datavolumetemplate(true, false, true);
}

/// `DescribeTable("should restore a vm that boots from a network cloned datavolume (not template)", ...)`.
async fn network_cloned_datavolume_not_template(restore_to_new_vm: bool, delete_source_pvc: bool) {
    let Some(mut ctx) = Ctx::start().await else { return };
    let source = source(&ctx).await;
    let mut vm = create_network_clone_vm_from_source(&source);
    let dv = orphan_data_volume_template(&mut vm, 0);
    let dv = ctx.cluster.create(DV, &dv).await;
    ctx.create_and_start_vm(vm).await;
    wait_dv_succeeded(&ctx.cluster, &name_of(&dv), secs(180)).await;

    check_clone_annotations(&ctx.cluster, &ctx.vm, true).await;
    if delete_source_pvc {
        ctx.cluster.in_namespace(ALTERNATIVE_NAMESPACE).delete(DV, &name_of(&source.dv)).await;
    }
    restore_without_clone_annotations(&mut ctx, restore_to_new_vm).await;
}

table_entries! {
    /// "should restore a vm that boots from a network cloned datavolume (not template)" / Entry "to the same VM"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolume_not_template_to_the_same_vm => network_cloned_datavolume_not_template(false, false);
    /// "should restore a vm that boots from a network cloned datavolume (not template)" / Entry "to a new VM"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolume_not_template_to_a_new_vm => network_cloned_datavolume_not_template(true, false);
    /// "should restore a vm that boots from a network cloned datavolume (not template)" / Entry "to the same VM, no source pvc"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolume_not_template_to_the_same_vm_no_source_pvc => network_cloned_datavolume_not_template(false, true);
    /// "should restore a vm that boots from a network cloned datavolume (not template)" / Entry "to a new VM, no source pvc"
    should_restore_a_vm_that_boots_from_a_network_cloned_datavolume_not_template_to_a_new_vm_no_source_pvc => network_cloned_datavolume_not_template(true, true);
}
