//! Owner references, as Kubernetes' `metav1.NewControllerRef` makes them.

use kube::Resource;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The controller reference of `owner` (`controller: true`, `blockOwnerDeletion: true`): what a
/// controller puts on the objects it makes, so that they go with it.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use vmsnap_api::kubevirt::VirtualMachine;

    use super::*;

    #[test]
    fn a_controller_reference_names_the_owner_by_kind_name_and_uid() {
        let mut vm = VirtualMachine::new("demo", Default::default());
        vm.metadata.uid = Some("u-1".into());
        let reference = controller_reference(&vm);
        assert_eq!(
            (
                reference.api_version.as_str(),
                reference.kind.as_str(),
                reference.name.as_str(),
                reference.uid.as_str()
            ),
            ("kubevirt.io/v1", "VirtualMachine", "demo", "u-1")
        );
        assert_eq!((reference.controller, reference.block_owner_deletion), (Some(true), Some(true)));
    }
}
