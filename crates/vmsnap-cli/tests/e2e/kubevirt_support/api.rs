//! The Kubernetes API as KubeVirt's functional tests use it through `kubecli.KubevirtClient`:
//! get, create, patch, update, delete and list of any kind, and the KubeVirt subresources, with the
//! API's own errors (code, reason, message) for the tests that expect a refusal.

use std::fmt;

use http::{Method, Request};
use serde_json::{Value, json};

/// A kind of the API: where its objects live.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Resource (plural) name.
    pub plural: &'static str,
    /// Whether its objects live in a namespace.
    pub namespaced: bool,
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind { group, version, kind, plural, namespaced }
}

pub const VM: Kind = kind("kubevirt.io", "v1", "VirtualMachine", "virtualmachines", true);
pub const VMI: Kind = kind("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances", true);
pub const SNAPSHOT: Kind =
    kind("snapshot.kubevirt.io", "v1beta1", "VirtualMachineSnapshot", "virtualmachinesnapshots", true);
pub const CONTENT: Kind = kind(
    "snapshot.kubevirt.io",
    "v1beta1",
    "VirtualMachineSnapshotContent",
    "virtualmachinesnapshotcontents",
    true,
);
pub const RESTORE: Kind =
    kind("snapshot.kubevirt.io", "v1beta1", "VirtualMachineRestore", "virtualmachinerestores", true);
pub const DV: Kind = kind("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", true);
pub const PVC: Kind = kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true);
pub const VOLUME_SNAPSHOT: Kind =
    kind("snapshot.storage.k8s.io", "v1", "VolumeSnapshot", "volumesnapshots", true);
pub const EVENT: Kind = kind("", "v1", "Event", "events", true);
pub const NAMESPACE: Kind = kind("", "v1", "Namespace", "namespaces", false);
pub const STORAGE_CLASS: Kind = kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", false);
pub const ROLE: Kind = kind("rbac.authorization.k8s.io", "v1", "Role", "roles", true);
pub const ROLE_BINDING: Kind = kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true);
pub const WEBHOOK: Kind = kind(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    false,
);

/// A refusal of the API server.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, ...).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
}

impl ApiError {
    /// `errors.IsNotFound`.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// `errors.IsConflict`.
    pub fn is_conflict(&self) -> bool {
        self.code == 409 && self.reason == "Conflict"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> ApiError {
        match error {
            kube::Error::Api(status) => {
                ApiError { code: status.code, reason: status.reason.clone(), message: status.message.clone() }
            }
            other => ApiError { code: 0, reason: "ClientError".into(), message: other.to_string() },
        }
    }
}

/// What an API call answers.
pub type ApiResult<T = Value> = Result<T, ApiError>;

/// A client of the API, in one namespace (`testsuite.GetTestNamespace`) unless told otherwise.
#[derive(Clone)]
pub struct Api {
    client: kube::Client,
    /// The namespace of namespaced calls.
    pub namespace: String,
}

impl Api {
    /// A client for `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Api {
        Api { client, namespace: namespace.to_owned() }
    }

    /// The same client in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Api {
        Api { client: self.client.clone(), namespace: namespace.to_owned() }
    }

    fn collection(&self, kind: Kind) -> String {
        let prefix = if kind.group.is_empty() {
            format!("/api/{}", kind.version)
        } else {
            format!("/apis/{}/{}", kind.group, kind.version)
        };
        if kind.namespaced {
            format!("{prefix}/namespaces/{}/{}", self.namespace, kind.plural)
        } else {
            format!("{prefix}/{}", kind.plural)
        }
    }

    async fn call(&self, method: Method, path: &str, content_type: &str, body: Option<&Value>) -> ApiResult {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON")).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .expect("a request");
        let text = self.client.request_text(request).await?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            code: 0,
            reason: "BadJSON".into(),
            message: format!("{e}: {text}"),
        })
    }

    /// `GET` of one object.
    pub async fn try_get(&self, kind: Kind, name: &str) -> ApiResult {
        self.call(Method::GET, &format!("{}/{name}", self.collection(kind)), "application/json", None).await
    }

    /// `GET` of one object that must exist.
    #[track_caller]
    pub fn get(&self, kind: Kind, name: &str) -> impl Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        let name = name.to_owned();
        async move {
            self.try_get(kind, &name)
                .await
                .unwrap_or_else(|e| panic!("get {} {name} ({caller}): {e}", kind.plural))
        }
    }

    /// `GET` of one object, `None` when it does not exist.
    pub async fn get_opt(&self, kind: Kind, name: &str) -> Option<Value> {
        match self.try_get(kind, name).await {
            Ok(object) => Some(object),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("get {} {name}: {e}", kind.plural),
        }
    }

    /// `POST` of a new object.
    pub async fn try_create(&self, kind: Kind, object: &Value) -> ApiResult {
        let object = typed(kind, object);
        self.call(Method::POST, &self.collection(kind), "application/json", Some(&object)).await
    }

    /// `POST` of a new object that must be accepted.
    pub async fn create(&self, kind: Kind, object: &Value) -> Value {
        self.try_create(kind, object).await.unwrap_or_else(|e| {
            panic!("create {} {}: {e}", kind.plural, object["metadata"]["name"].as_str().unwrap_or("?"))
        })
    }

    /// `PUT` of a whole object (its `resourceVersion` guards against lost updates).
    pub async fn try_update(&self, kind: Kind, object: &Value) -> ApiResult {
        let name = object["metadata"]["name"].as_str().expect("a name");
        let object = typed(kind, object);
        self.call(
            Method::PUT,
            &format!("{}/{name}", self.collection(kind)),
            "application/json",
            Some(&object),
        )
        .await
    }

    /// `PUT` of the status subresource.
    pub async fn try_update_status(&self, kind: Kind, object: &Value) -> ApiResult {
        let name = object["metadata"]["name"].as_str().expect("a name");
        let path = format!("{}/{name}/status", self.collection(kind));
        self.call(Method::PUT, &path, "application/json", Some(&typed(kind, object))).await
    }

    /// A JSON patch (`types.JSONPatchType`).
    pub async fn try_json_patch(&self, kind: Kind, name: &str, patch: &Value) -> ApiResult {
        let path = format!("{}/{name}", self.collection(kind));
        self.call(Method::PATCH, &path, "application/json-patch+json", Some(patch)).await
    }

    /// A JSON patch that must be accepted.
    pub async fn json_patch(&self, kind: Kind, name: &str, patch: &Value) -> Value {
        self.try_json_patch(kind, name, patch)
            .await
            .unwrap_or_else(|e| panic!("patch {} {name} with {patch}: {e}", kind.plural))
    }

    /// `DELETE`; a missing object is not an error (as the tests' cleanups treat it).
    pub async fn delete(&self, kind: Kind, name: &str) {
        let path = format!("{}/{name}", self.collection(kind));
        match self.call(Method::DELETE, &path, "application/json", None).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("delete {} {name}: {e}", kind.plural),
        }
    }

    /// `LIST` with a label or field selector (`""` for none).
    pub async fn list(&self, kind: Kind, label_selector: &str, field_selector: &str) -> Vec<Value> {
        let mut query =
            form_urlencoded(&[("labelSelector", label_selector), ("fieldSelector", field_selector)]);
        if !query.is_empty() {
            query.insert(0, '?');
        }
        let path = format!("{}{query}", self.collection(kind));
        let list = self
            .call(Method::GET, &path, "application/json", None)
            .await
            .unwrap_or_else(|e| panic!("list {} ({query}): {e}", kind.plural));
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// `PUT` of a KubeVirt subresource (`start`, `stop`, `pause`, `addvolume`...) of a VM or VMI.
    pub async fn subresource(&self, kind: Kind, name: &str, action: &str, body: &Value) -> ApiResult<()> {
        let path = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/{}/{name}/{action}",
            self.namespace, kind.plural
        );
        self.call(Method::PUT, &path, "application/json", Some(body)).await.map(|_| ())
    }

    /// `virtClient.VirtualMachine(ns).Start`.
    pub async fn start_vm(&self, name: &str) -> ApiResult<()> {
        self.subresource(VM, name, "start", &json!({})).await
    }

    /// `virtClient.VirtualMachine(ns).Stop`.
    pub async fn stop_vm(&self, name: &str) -> ApiResult<()> {
        self.subresource(VM, name, "stop", &json!({})).await
    }
}

/// The object with its `apiVersion` and `kind` (a typed client-go client always sends them).
fn typed(kind: Kind, object: &Value) -> Value {
    let mut object = object.clone();
    let api_version = if kind.group.is_empty() {
        kind.version.to_owned()
    } else {
        format!("{}/{}", kind.group, kind.version)
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind.kind);
    object
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}
