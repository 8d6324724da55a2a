//! One `AdmissionReview`: decode, run the rule for its resource, answer allowed or denied with
//! KubeVirt's `Status` (code 422, reason Invalid, the causes).

use async_trait::async_trait;
use serde_json::{Value, json};
use vmsnap_admission::{Denial, Operation, RestoreContext};
use vmsnap_api::kubevirt::VirtualMachine;
use vmsnap_api::schedule::VirtualMachineSnapshotSchedule;
use vmsnap_api::snapshot::{VirtualMachineRestore, VirtualMachineSnapshot, VirtualMachineSnapshotContent};

/// What the restore rule needs to look up.
#[async_trait]
pub trait Lookup: Send + Sync {
    /// The objects a restore create is checked against.
    async fn restore_context(&self, restore: &VirtualMachineRestore) -> Result<RestoreContext, String>;
}

/// Looks up through the Kubernetes API.
pub struct KubeLookup(pub kube::Client);

#[async_trait]
impl Lookup for KubeLookup {
    async fn restore_context(&self, restore: &VirtualMachineRestore) -> Result<RestoreContext, String> {
        use kube::api::Api;
        let ns = restore.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let e = |e: kube::Error| e.to_string();
        let snaps: Api<VirtualMachineSnapshot> = Api::namespaced(self.0.clone(), &ns);
        let snapshot = snaps.get_opt(&restore.spec.virtual_machine_snapshot_name).await.map_err(e)?;
        let content_name = snapshot
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.virtual_machine_snapshot_content_name.clone());
        let content = match content_name {
            Some(c) => Api::<VirtualMachineSnapshotContent>::namespaced(self.0.clone(), &ns)
                .get_opt(&c)
                .await
                .map_err(e)?,
            None => None,
        };
        let target_vm = Api::<VirtualMachine>::namespaced(self.0.clone(), &ns)
            .get_opt(&restore.spec.target.name)
            .await
            .map_err(e)?;
        let other_restores = Api::<VirtualMachineRestore>::namespaced(self.0.clone(), &ns)
            .list(&Default::default())
            .await
            .map_err(e)?
            .items;
        Ok(RestoreContext { snapshot, content, target_vm, other_restores })
    }
}

fn response(uid: &Value, result: Result<(), Denial>) -> Value {
    let response = match result {
        Ok(()) => json!({"uid": uid, "allowed": true}),
        // KubeVirt answers a rule it could not evaluate with an error, not with causes.
        Err(Denial { error: Some(error), .. }) => return error_response(uid, error),
        Err(denial) => {
            let causes = denial.status_causes();
            let message = denial.status_message();
            json!({"uid": uid, "allowed": false, "status": {"status": "Failure", "message": message, "reason": "Invalid", "code": 422, "details": {"causes": causes}}})
        }
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

fn error_response(uid: &Value, message: String) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "response": {"uid": uid, "allowed": false, "status": {"status": "Failure", "message": message, "code": 400, "reason": "BadRequest"}}})
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Result<Option<T>, String> {
    if v.is_null() {
        return Ok(None);
    }
    serde_json::from_value(v.clone()).map(Some).map_err(|e| e.to_string())
}

/// The request's `object` (required) and `oldObject`.
fn decode_pair<T: serde::de::DeserializeOwned>(request: &Value) -> Result<(T, Option<T>), String> {
    let old = decode::<T>(&request["oldObject"])?;
    match decode::<T>(&request["object"])? {
        Some(new) => Ok((new, old)),
        None => Err("the AdmissionReview has no object".into()),
    }
}

/// Answers one AdmissionReview.
pub async fn review(lookup: &dyn Lookup, body: &Value) -> Value {
    let request = &body["request"];
    let uid = &request["uid"];
    let op = match request["operation"].as_str() {
        Some("CREATE") => Operation::Create,
        Some("UPDATE") => Operation::Update,
        Some(other) => return error_response(uid, format!("unexpected operation {other}")),
        None => return error_response(uid, "the AdmissionReview has no request.operation".into()),
    };
    let resource = request["resource"]["resource"].as_str().unwrap_or_default();
    let result = match resource {
        "virtualmachinesnapshots" => {
            match (
                decode::<VirtualMachineSnapshot>(&request["object"]),
                decode::<VirtualMachineSnapshot>(&request["oldObject"]),
            ) {
                (Ok(Some(new)), Ok(old)) => vmsnap_admission::validate_snapshot(op, old.as_ref(), &new),
                (Err(e), _) | (_, Err(e)) => return error_response(uid, e),
                (Ok(None), _) => return error_response(uid, "the AdmissionReview has no object".into()),
            }
        }
        "virtualmachinerestores" => {
            match (
                decode::<VirtualMachineRestore>(&request["object"]),
                decode::<VirtualMachineRestore>(&request["oldObject"]),
            ) {
                (Ok(Some(new)), Ok(old)) => {
                    let ctx = if op == Operation::Create {
                        match lookup.restore_context(&new).await {
                            Ok(c) => c,
                            Err(e) => return error_response(uid, e),
                        }
                    } else {
                        RestoreContext::default()
                    };
                    vmsnap_admission::validate_restore(op, old.as_ref(), &new, &ctx)
                }
                (Err(e), _) | (_, Err(e)) => return error_response(uid, e),
                (Ok(None), _) => return error_response(uid, "the AdmissionReview has no object".into()),
            }
        }
        "virtualmachinesnapshotschedules" => {
            match decode::<VirtualMachineSnapshotSchedule>(&request["object"]) {
                Ok(Some(new)) => vmsnap_admission::validate_schedule(&new),
                Err(e) => return error_response(uid, e),
                Ok(None) => return error_response(uid, "the AdmissionReview has no object".into()),
            }
        }
        "virtualmachinebackuprepositories" => match decode_pair(request) {
            Ok((new, old)) => vmsnap_admission::validate_repository(op, old.as_ref(), &new),
            Err(e) => return error_response(uid, e),
        },
        "virtualmachinerepositorybackups" => match decode_pair(request) {
            Ok((new, old)) => vmsnap_admission::validate_backup(op, old.as_ref(), &new),
            Err(e) => return error_response(uid, e),
        },
        "virtualmachinerepositoryrestores" => match decode_pair(request) {
            Ok((new, old)) => vmsnap_admission::validate_repository_restore(op, old.as_ref(), &new),
            Err(e) => return error_response(uid, e),
        },
        "virtualmachines" => match (
            decode::<VirtualMachine>(&request["object"]),
            decode::<VirtualMachine>(&request["oldObject"]),
        ) {
            (Ok(Some(new)), Ok(Some(old))) => vmsnap_admission::validate_vm_update(&old, &new),
            (Ok(Some(_)), Ok(None)) => Ok(()),
            (Err(e), _) | (_, Err(e)) => return error_response(uid, e),
            (Ok(None), _) => return error_response(uid, "the AdmissionReview has no object".into()),
        },
        other => return error_response(uid, format!("unexpected resource {other}")),
    };
    response(uid, result)
}
