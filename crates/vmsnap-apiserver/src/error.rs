//! API errors, rendered as Kubernetes `Status` objects with the right `reason` and `code`.

use serde_json::{Value, json};
use vmsnap_api::registry::ResourceType;

use crate::pure::validation::Cause;

/// An error answered to a client as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: &'static str,
    /// Human-readable message (kubectl prints it).
    pub message: String,
    /// `details` of the Status.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<vmsnap_contracts::subresources::SubresourceError> for ApiError {
    fn from(e: vmsnap_contracts::subresources::SubresourceError) -> Self {
        ApiError { code: e.code, reason: e.reason, message: e.message, details: e.details }
    }
}

fn details(rt: &ResourceType, name: &str) -> Value {
    json!({ "name": name, "group": rt.group, "kind": rt.plural })
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 404 for an object of a kind.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let mut e = ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", rt.qualified_plural()));
        e.details = Some(details(rt, name));
        e
    }

    /// 404 for a path that serves nothing.
    pub fn no_such_path() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 409 on create of an existing name.
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified_plural()),
        );
        e.details = Some(details(rt, name));
        e
    }

    /// 409 on a stale resourceVersion or a failed precondition.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified_plural()
            ),
        );
        e.details = Some(details(rt, name));
        e
    }

    /// 409 with a free message (e.g. "VM is not running").
    pub fn conflict_message(message: impl Into<String>) -> Self {
        ApiError::new(409, "Conflict", message)
    }

    /// 410 (watch resumption too old, or an expired continue token).
    pub fn expired(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    /// 413: `Request entity too large: limit is 3145728`.
    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: {}", message.into()))
    }

    /// 504 `Too large resource version: X, current: Y` for a read or watch from a revision the
    /// store has not reached, with the cause and retry delay kube-apiserver's watch cache gives.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut e = ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"));
        e.details = Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        }));
        e
    }

    /// 415 for a patch type a kind does not support.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 422 with field causes: `Kind.group "name" is invalid: field: message, ...`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: &[Cause]) -> Self {
        let qualified_kind =
            if rt.group.is_empty() { rt.kind.clone() } else { format!("{}.{}", rt.kind, rt.group) };
        let summary: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let message = if summary.len() == 1 {
            format!("{qualified_kind} \"{name}\" is invalid: {}", summary[0])
        } else {
            format!("{qualified_kind} \"{name}\" is invalid: [{}]", summary.join(", "))
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: Some(json!({
                "name": name,
                "group": rt.group,
                "kind": rt.kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()
            })),
        }
    }

    /// 422 from an admission webhook: the webhook's message and causes, without name or kind
    /// (kubectl then prints "The request is invalid: ...", as with KubeVirt's webhooks).
    pub fn denied(message: impl Into<String>, causes: Value) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: message.into(),
            details: Some(json!({ "causes": causes })),
        }
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// 504.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl From<vmsnap_store::StoreError> for ApiError {
    fn from(e: vmsnap_store::StoreError) -> Self {
        match e {
            // What a patch made of an object, not a failure of the store.
            vmsnap_store::StoreError::TooDeep { .. } => ApiError::bad_request(e.to_string()),
            // Not the server's fault nor the request's: say what to do about it.
            vmsnap_store::StoreError::Full { .. } => ApiError::new(507, "InsufficientStorage", e.to_string()),
            e => ApiError::internal(format!("storage error: {e}")),
        }
    }
}
