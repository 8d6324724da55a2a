//! Request bodies in Kubernetes' protobuf encoding, decoded into the JSON form of the object.
//!
//! kubectl's typed commands (`create secret`, `create configmap`, `create namespace`,
//! `create serviceaccount`, `create role`, ...) send their object as
//! `application/vnd.kubernetes.protobuf`, without a JSON fallback. The body is the magic
//! `k8s\0` followed by a `runtime.Unknown` envelope (`typeMeta`, `raw`) whose `raw` is the
//! object's message. The messages decoded here are described by their field numbers in
//! `k8s.io/api` and `k8s.io/apimachinery`'s `generated.proto`; a kind without a description is
//! refused with a message that says how to send it as JSON.

use base64::Engine;
use serde_json::{Map, Value, json};

/// Why a protobuf body cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// Not the `k8s\0` envelope, or a message cut short or malformed.
    #[error("the protobuf body is not a valid Kubernetes object: {0}")]
    Malformed(&'static str),
    /// A kind whose protobuf message this server does not describe.
    #[error(
        "the protobuf encoding of {kind} ({api_version}) is not supported by this server; send it as application/json (e.g. `kubectl create ... --dry-run=client -o yaml | kubectl create -f -`)"
    )]
    UnsupportedKind {
        /// `apiVersion` of the envelope.
        api_version: String,
        /// `kind` of the envelope.
        kind: String,
    },
}

/// What a field holds, and how it becomes JSON.
#[derive(Clone, Copy)]
enum Type {
    String,
    /// Bytes, as base64 in JSON.
    Bytes,
    Bool,
    Int,
    /// `meta.v1.Time` (`seconds`, `nanos`), as RFC 3339 in JSON.
    Time,
    Message(&'static [Field]),
    /// `map<string, string>`.
    StringMap,
    /// `map<string, bytes>`, values as base64 in JSON.
    BytesMap,
}

/// One field of a message: number, JSON name, type, repeated.
type Field = (u32, &'static str, Type, bool);

const OWNER_REFERENCE: &[Field] = &[
    (1, "kind", Type::String, false),
    (3, "name", Type::String, false),
    (4, "uid", Type::String, false),
    (5, "apiVersion", Type::String, false),
    (6, "controller", Type::Bool, false),
    (7, "blockOwnerDeletion", Type::Bool, false),
];

const OBJECT_META: &[Field] = &[
    (1, "name", Type::String, false),
    (2, "generateName", Type::String, false),
    (3, "namespace", Type::String, false),
    (4, "selfLink", Type::String, false),
    (5, "uid", Type::String, false),
    (6, "resourceVersion", Type::String, false),
    (7, "generation", Type::Int, false),
    (8, "creationTimestamp", Type::Time, false),
    (9, "deletionTimestamp", Type::Time, false),
    (10, "deletionGracePeriodSeconds", Type::Int, false),
    (11, "labels", Type::StringMap, false),
    (12, "annotations", Type::StringMap, false),
    (13, "ownerReferences", Type::Message(OWNER_REFERENCE), true),
    (14, "finalizers", Type::String, true),
];

const SECRET: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (2, "data", Type::BytesMap, false),
    (3, "type", Type::String, false),
    (4, "stringData", Type::StringMap, false),
    (5, "immutable", Type::Bool, false),
];

const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (2, "data", Type::StringMap, false),
    (3, "binaryData", Type::BytesMap, false),
    (4, "immutable", Type::Bool, false),
];

const NAMESPACE_CONDITION: &[Field] = &[
    (1, "type", Type::String, false),
    (2, "status", Type::String, false),
    (4, "lastTransitionTime", Type::Time, false),
    (5, "reason", Type::String, false),
    (6, "message", Type::String, false),
];

const NAMESPACE: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (2, "spec", Type::Message(&[(1, "finalizers", Type::String, true)]), false),
    (
        3,
        "status",
        Type::Message(&[
            (1, "phase", Type::String, false),
            (2, "conditions", Type::Message(NAMESPACE_CONDITION), true),
        ]),
        false,
    ),
];

const OBJECT_REFERENCE: &[Field] = &[
    (1, "kind", Type::String, false),
    (2, "namespace", Type::String, false),
    (3, "name", Type::String, false),
    (4, "uid", Type::String, false),
    (5, "apiVersion", Type::String, false),
    (6, "resourceVersion", Type::String, false),
    (7, "fieldPath", Type::String, false),
];

const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (2, "secrets", Type::Message(OBJECT_REFERENCE), true),
    (3, "imagePullSecrets", Type::Message(&[(1, "name", Type::String, false)]), true),
    (4, "automountServiceAccountToken", Type::Bool, false),
];

const POLICY_RULE: &[Field] = &[
    (1, "verbs", Type::String, true),
    (2, "apiGroups", Type::String, true),
    (3, "resources", Type::String, true),
    (4, "resourceNames", Type::String, true),
    (5, "nonResourceURLs", Type::String, true),
];

const LABEL_SELECTOR: &[Field] = &[
    (1, "matchLabels", Type::StringMap, false),
    (
        2,
        "matchExpressions",
        Type::Message(&[
            (1, "key", Type::String, false),
            (2, "operator", Type::String, false),
            (3, "values", Type::String, true),
        ]),
        true,
    ),
];

const ROLE: &[Field] =
    &[(1, "metadata", Type::Message(OBJECT_META), false), (2, "rules", Type::Message(POLICY_RULE), true)];

const CLUSTER_ROLE: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (2, "rules", Type::Message(POLICY_RULE), true),
    (
        3,
        "aggregationRule",
        Type::Message(&[(1, "clusterRoleSelectors", Type::Message(LABEL_SELECTOR), true)]),
        false,
    ),
];

const BINDING: &[Field] = &[
    (1, "metadata", Type::Message(OBJECT_META), false),
    (
        2,
        "subjects",
        Type::Message(&[
            (1, "kind", Type::String, false),
            (2, "apiGroup", Type::String, false),
            (3, "name", Type::String, false),
            (4, "namespace", Type::String, false),
        ]),
        true,
    ),
    (
        3,
        "roleRef",
        Type::Message(&[
            (1, "apiGroup", Type::String, false),
            (2, "kind", Type::String, false),
            (3, "name", Type::String, false),
        ]),
        false,
    ),
];

fn message_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => BINDING,
        _ => return None,
    })
}

const MAGIC: &[u8] = b"k8s\0";

const UNKNOWN: &[Field] = &[
    (
        1,
        "typeMeta",
        Type::Message(&[(1, "apiVersion", Type::String, false), (2, "kind", Type::String, false)]),
        false,
    ),
    (2, "raw", Type::Bytes, false),
    (3, "contentEncoding", Type::String, false),
    (4, "contentType", Type::String, false),
];

/// Decodes a protobuf request body into the object's JSON form, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope =
        body.strip_prefix(MAGIC).ok_or(ProtobufError::Malformed("the k8s magic prefix is missing"))?;
    let mut fields = Fields::default();
    let unknown = message(envelope, UNKNOWN, 0, &mut fields)?;
    let api_version = unknown.pointer("/typeMeta/apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = unknown.pointer("/typeMeta/kind").and_then(Value::as_str).unwrap_or_default();
    if unknown.get("contentEncoding").and_then(Value::as_str).is_some_and(|e| !e.is_empty()) {
        return Err(ProtobufError::Malformed("content encodings are not supported"));
    }
    let schema = message_of(api_version, kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
    })?;
    let raw = fields.raw.take().unwrap_or_default();
    let mut object = message(&raw, schema, 0, &mut Fields::default())?;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

/// The envelope's `raw` bytes, kept as bytes rather than base64 text.
#[derive(Default)]
struct Fields {
    raw: Option<Vec<u8>>,
}

/// Deeper than any of the messages above: a bound on what a crafted body can make us recurse into.
const MAX_DEPTH: usize = 8;

fn message(
    mut bytes: &[u8],
    schema: &[Field],
    depth: usize,
    fields: &mut Fields,
) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::Malformed("messages are nested too deeply"));
    }
    let mut out = Map::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (number, wire) = ((key >> 3) as u32, (key & 7) as u8);
        let value = wire_value(&mut bytes, wire)?;
        let Some(&(_, name, ty, repeated)) = schema.iter().find(|f| f.0 == number) else { continue };
        if depth == 0 && name == "raw" && std::ptr::eq(schema, UNKNOWN) {
            let WireValue::Bytes(raw) = value else {
                return Err(ProtobufError::Malformed("raw is not bytes"));
            };
            fields.raw = Some(raw.to_vec());
            continue;
        }
        match ty {
            Type::StringMap | Type::BytesMap => {
                let WireValue::Bytes(entry) = value else {
                    return Err(ProtobufError::Malformed("a map entry is not a message"));
                };
                let (key, value) = map_entry(entry, matches!(ty, Type::BytesMap))?;
                let map = out.entry(name).or_insert_with(|| json!({}));
                map[key] = value;
            }
            _ => {
                let decoded = scalar(value, ty, depth, fields)?;
                if repeated {
                    let list = out.entry(name).or_insert_with(|| json!([]));
                    list.as_array_mut().expect("a repeated field is a list").push(decoded);
                } else {
                    out.insert(name.to_owned(), decoded);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

enum WireValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn wire_value<'a>(bytes: &mut &'a [u8], wire: u8) -> Result<WireValue<'a>, ProtobufError> {
    match wire {
        0 => Ok(WireValue::Varint(varint(bytes)?)),
        2 => {
            let len = usize::try_from(varint(bytes)?)
                .map_err(|_| ProtobufError::Malformed("a length is too large"))?;
            if len > bytes.len() {
                return Err(ProtobufError::Malformed("a field is longer than the body"));
            }
            let (value, rest) = bytes.split_at(len);
            *bytes = rest;
            Ok(WireValue::Bytes(value))
        }
        1 | 5 => {
            let len = if wire == 1 { 8 } else { 4 };
            if len > bytes.len() {
                return Err(ProtobufError::Malformed("a fixed-size field is cut short"));
            }
            *bytes = &bytes[len..];
            Ok(WireValue::Fixed)
        }
        _ => Err(ProtobufError::Malformed("unknown wire type")),
    }
}

fn varint(bytes: &mut &[u8]) -> Result<u64, ProtobufError> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(value);
        }
    }
    Err(ProtobufError::Malformed("a varint is cut short or too long"))
}

fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("a string is not UTF-8"))
}

fn base64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn scalar(value: WireValue<'_>, ty: Type, depth: usize, fields: &mut Fields) -> Result<Value, ProtobufError> {
    Ok(match (ty, value) {
        (Type::String, WireValue::Bytes(b)) => json!(text(b)?),
        (Type::Bytes, WireValue::Bytes(b)) => base64(b),
        (Type::Bool, WireValue::Varint(v)) => json!(v != 0),
        (Type::Int, WireValue::Varint(v)) => json!(v as i64),
        (Type::Time, WireValue::Bytes(b)) => time(b)?,
        (Type::Message(schema), WireValue::Bytes(b)) => message(b, schema, depth + 1, fields)?,
        _ => return Err(ProtobufError::Malformed("a field has the wrong wire type")),
    })
}

fn map_entry(mut bytes: &[u8], bytes_value: bool) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), if bytes_value { base64(&[]) } else { json!("") });
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        match (tag >> 3, wire_value(&mut bytes, (tag & 7) as u8)?) {
            (1, WireValue::Bytes(b)) => key = text(b)?,
            (2, WireValue::Bytes(b)) => value = if bytes_value { base64(b) } else { json!(text(b)?) },
            _ => return Err(ProtobufError::Malformed("a map entry has an unexpected field")),
        }
    }
    Ok((key, value))
}

fn time(mut bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut seconds = 0i64;
    while !bytes.is_empty() {
        let tag = varint(&mut bytes)?;
        if let (1, WireValue::Varint(v)) = (tag >> 3, wire_value(&mut bytes, (tag & 7) as u8)?) {
            seconds = v as i64;
        }
    }
    Ok(k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map_or(Value::Null, |ts| Value::String(crate::pure::time::format_rfc3339(ts))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal encoder, to build the bodies kubectl sends.
    fn field(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = varint_bytes(u64::from(number << 3 | 2));
        out.extend(varint_bytes(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    fn varint_bytes(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        let mut out = MAGIC.to_vec();
        out.extend(field(1, &type_meta));
        out.extend(field(2, raw));
        out
    }

    #[test]
    fn a_secret_as_kubectl_create_secret_generic_sends_it() {
        let meta = [field(1, b"s"), field(3, b"default")].concat();
        let entry = [field(1, b"a"), field(2, b"b")].concat();
        let raw = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let object = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                   "data": {"a": "Yg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn a_namespace_and_a_role_with_repeated_fields() {
        let raw = field(1, &field(1, b"demo"));
        assert_eq!(decode(&envelope("v1", "Namespace", &raw)).unwrap()["metadata"]["name"], "demo");
        let rule = [field(1, b"get"), field(1, b"list"), field(3, b"pods")].concat();
        let raw = [field(1, &field(1, b"r")), field(2, &rule)].concat();
        let role = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", &raw)).unwrap();
        assert_eq!(role["rules"], json!([{"verbs": ["get", "list"], "resources": ["pods"]}]));
    }

    #[test]
    fn kinds_without_a_description_are_named_in_the_refusal() {
        let err = decode(&envelope("apps/v1", "Deployment", b"")).unwrap_err();
        assert!(err.to_string().contains("Deployment (apps/v1) is not supported"), "{err}");
    }

    #[test]
    fn truncated_and_foreign_bodies_are_malformed() {
        assert!(matches!(decode(b"{}"), Err(ProtobufError::Malformed(_))));
        let mut body = envelope("v1", "Secret", &field(1, &field(1, b"s")));
        body.truncate(body.len() - 2);
        assert!(matches!(decode(&body), Err(ProtobufError::Malformed(_))));
        assert!(matches!(
            decode(b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
            Err(ProtobufError::Malformed(_))
        ));
    }
}
