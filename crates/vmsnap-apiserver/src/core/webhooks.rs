//! Validating admission webhooks: the ValidatingWebhookConfigurations users store are called as
//! kube-apiserver calls them, with an `AdmissionReview` v1 over HTTPS (trusting the
//! configuration's `caBundle`), for the requests their `rules`, `namespaceSelector` and
//! `objectSelector` select, within `timeoutSeconds`, and with their `failurePolicy` deciding what
//! a webhook that cannot be reached means. Webhooks are not called for webhook configurations
//! themselves, so that a broken webhook can always be removed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value, json};
use vmsnap_api::registry::{ResourceType, registry};

use super::Core;
use super::objects::to_version;
use crate::error::ApiError;
use crate::pure::webhook_rules::{Attributes, rule_matches, selector_matches};

/// The store resource of ValidatingWebhookConfigurations, whose writes invalidate the cache.
pub(crate) const CONFIGURATIONS: &str = "admissionregistration.k8s.io/validatingwebhookconfigurations";

/// The configurations, read from the store once after each change to them.
#[derive(Default)]
pub(crate) struct WebhookCache {
    configurations: std::sync::Mutex<Option<Arc<Vec<Value>>>>,
}

impl WebhookCache {
    /// Forgets the configurations (one of them was written).
    pub fn invalidate(&self) {
        *self.configurations.lock().expect("webhook cache lock") = None;
    }
}

/// The operations validating webhooks are called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
}

/// One admission request, as the webhooks see it.
pub(crate) struct Review<'a> {
    pub rt: &'a ResourceType,
    pub version: &'a str,
    pub operation: Operation,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
    pub dry_run: bool,
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
    }
}

impl Core {
    async fn webhook_configurations(&self) -> Result<Arc<Vec<Value>>, ApiError> {
        if let Some(cached) = self.webhooks.configurations.lock().expect("webhook cache lock").clone() {
            return Ok(cached);
        }
        let (items, _) = self.store.list(CONFIGURATIONS, None).await?;
        let loaded = Arc::new(items.iter().map(|v| (**v).clone()).collect::<Vec<_>>());
        *self.webhooks.configurations.lock().expect("webhook cache lock") = Some(loaded.clone());
        Ok(loaded)
    }

    /// Calls every validating webhook that selects the request; the first denial or failure
    /// (under `failurePolicy: Fail`) refuses it.
    pub(crate) async fn call_webhooks(&self, review: &Review<'_>) -> Result<(), ApiError> {
        if review.rt.plural == "validatingwebhookconfigurations"
            || review.rt.plural == "mutatingwebhookconfigurations"
        {
            return Ok(());
        }
        let configurations = self.webhook_configurations().await?;
        if configurations.is_empty() {
            return Ok(());
        }
        let attributes = Attributes {
            operation: operation_name(review.operation),
            group: review.rt.group,
            version: review.version,
            resource: &review.rt.plural,
            subresource: review.subresource,
            namespaced: review.rt.namespaced(),
        };
        let namespace_labels = self.namespace_labels(review).await?;
        for configuration in configurations.iter() {
            for webhook in configuration["webhooks"].as_array().into_iter().flatten() {
                if !self.selects(webhook, &attributes, review, namespace_labels.as_ref()) {
                    continue;
                }
                let endpoint = self.endpoint(webhook).await?;
                call(webhook, endpoint, review).await?;
            }
        }
        Ok(())
    }

    /// The labels of the request's namespace (of the Namespace itself for namespaces).
    async fn namespace_labels(&self, review: &Review<'_>) -> Result<Option<Map<String, Value>>, ApiError> {
        let ns_rt = registry().by_kind("v1", "Namespace").expect("Namespace is registered");
        let namespace = if review.rt.group.is_empty() && review.rt.plural == "namespaces" {
            return Ok(review
                .new
                .or(review.old)
                .and_then(|o| o.pointer("/metadata/labels")?.as_object().cloned()));
        } else if review.rt.namespaced() {
            review.namespace.unwrap_or("default")
        } else {
            return Ok(None);
        };
        let stored = self.get_stored(ns_rt, None, namespace).await?;
        Ok(Some(stored.and_then(|n| n.pointer("/metadata/labels")?.as_object().cloned()).unwrap_or_default()))
    }

    fn selects(
        &self,
        webhook: &Value,
        attributes: &Attributes<'_>,
        review: &Review<'_>,
        namespace_labels: Option<&Map<String, Value>>,
    ) -> bool {
        let rules =
            webhook["rules"].as_array().is_some_and(|r| r.iter().any(|rule| rule_matches(rule, attributes)));
        // Cluster-scoped objects (other than namespaces) are not subject to namespaceSelector.
        let namespace =
            namespace_labels.is_none_or(|labels| selector_matches(&webhook["namespaceSelector"], labels));
        let labels_of = |o: Option<&Value>| {
            o.and_then(|o| o.pointer("/metadata/labels"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        // The object selector matches if either the new or the old object matches.
        let object = [review.new, review.old]
            .into_iter()
            .flatten()
            .any(|o| selector_matches(&webhook["objectSelector"], &labels_of(Some(o))));
        rules && namespace && object
    }
}

/// A webhook's answer, or why it could not be had.
async fn call(webhook: &Value, endpoint: Endpoint, review: &Review<'_>) -> Result<(), ApiError> {
    let name = webhook["name"].as_str().unwrap_or_default();
    let fail_open = webhook["failurePolicy"].as_str() == Some("Ignore");
    let timeout = Duration::from_secs(webhook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
    let uid = uuid::Uuid::new_v4().to_string();
    let request = admission_review(review, &uid);
    let url = match endpoint {
        Endpoint::Url(url) => url,
        Endpoint::Unreachable(reason) => return failed(name, fail_open, reason),
    };
    let answer = tokio::time::timeout(timeout, post(&url, webhook, &request)).await;
    let response = match answer {
        Err(_) => {
            return failed(
                name,
                fail_open,
                format!("failed to call webhook: Post \"{url}\": context deadline exceeded"),
            );
        }
        Ok(Err(e)) => return failed(name, fail_open, format!("failed to call webhook: Post \"{url}\": {e}")),
        Ok(Ok(response)) => response,
    };
    let Some(result) = response.get("response") else {
        return failed(name, fail_open, "received an AdmissionReview without a response".into());
    };
    if result["uid"].as_str() != Some(uid.as_str()) {
        return failed(
            name,
            fail_open,
            format!("expected response.uid={uid:?}, got {:?}", result["uid"].as_str().unwrap_or_default()),
        );
    }
    if result["allowed"].as_bool() == Some(true) {
        return Ok(());
    }
    Err(denial(name, &result["status"]))
}

fn failed(name: &str, fail_open: bool, reason: String) -> Result<(), ApiError> {
    if fail_open {
        tracing::warn!(webhook = name, %reason, "failed calling webhook, ignoring (failurePolicy Ignore)");
        return Ok(());
    }
    Err(ApiError::internal(format!("Internal error occurred: failed calling webhook \"{name}\": {reason}")))
}

/// kube-apiserver's `ToStatusErr`: the webhook's Status, its message prefixed with who denied it,
/// its code at least 400.
fn denial(name: &str, status: &Value) -> ApiError {
    let denied_by = format!("admission webhook \"{name}\" denied the request");
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status["code"].as_u64().filter(|c| (400..600).contains(c)).unwrap_or(400) as u16;
    const REASONS: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    let reason =
        status["reason"].as_str().and_then(|r| REASONS.iter().find(|k| **k == r).copied()).unwrap_or("");
    ApiError { code, reason, message, details: status.get("details").filter(|d| d.is_object()).cloned() }
}

fn admission_review(review: &Review<'_>, uid: &str) -> Value {
    let rt = review.rt;
    let kind = json!({"group": rt.group, "version": review.version, "kind": rt.kind});
    let resource = json!({"group": rt.group, "version": review.version, "resource": rt.plural});
    let view = |o: Option<&Value>| o.map_or(Value::Null, |o| to_version(rt, review.version, o.clone()));
    let options_kind = match review.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut request = json!({
        "uid": uid,
        "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": review.name,
        "operation": operation_name(review.operation),
        "userInfo": {"username": "vmsnap-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": view(review.new),
        "oldObject": view(review.old),
        "dryRun": review.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
    });
    if let Some(ns) = review.namespace.filter(|_| rt.namespaced()) {
        request["namespace"] = json!(ns);
    }
    if let Some(sub) = review.subresource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Where a webhook is called, or why it cannot be.
enum Endpoint {
    /// `clientConfig.url`.
    Url(String),
    /// Why the call fails before it is made, in kube-apiserver's words.
    Unreachable(String),
}

impl Core {
    /// The webhook's endpoint: its `clientConfig.url`. A `clientConfig.service` names a Service, and
    /// the embedded server has no cluster network to reach one: the call fails (kube-apiserver's
    /// `service "X" not found` when there is no such Service) and `failurePolicy` applies. Nothing
    /// is resolved or dialled for it.
    async fn endpoint(&self, webhook: &Value) -> Result<Endpoint, ApiError> {
        let client = &webhook["clientConfig"];
        if let Some(url) = client["url"].as_str() {
            return Ok(Endpoint::Url(url.to_owned()));
        }
        let service = &client["service"];
        let (Some(name), Some(ns)) = (service["name"].as_str(), service["namespace"].as_str()) else {
            return Ok(Endpoint::Unreachable(
                "the webhook has neither clientConfig.url nor clientConfig.service".into(),
            ));
        };
        let port = service["port"].as_u64().unwrap_or(443);
        let path = service["path"].as_str().unwrap_or("/");
        let timeout = webhook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30);
        let url = format!("https://{name}.{ns}.svc:{port}{path}?timeout={timeout}s");
        let services = registry().by_kind("v1", "Service");
        let exists = match services {
            Some(rt) => self.get_stored(rt, Some(ns), name).await?.is_some(),
            None => false,
        };
        let why = if exists {
            format!(
                "service \"{name}\" has no endpoints this API server can reach (it has no cluster network); give the webhook a clientConfig.url"
            )
        } else {
            format!("service \"{name}\" not found")
        };
        Ok(Endpoint::Unreachable(format!("failed to call webhook: Post \"{url}\": {why}")))
    }
}

/// Why a call failed, worded like Go's HTTP client errors where it matters.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Url(String),
    #[error("dial tcp {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Http(String),
}

async fn post(url: &str, webhook: &Value, body: &Value) -> Result<Value, CallError> {
    let uri: http::Uri = url.parse().map_err(|e| CallError::Url(format!("parse {url:?}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(CallError::Url("webhook URLs must use https".into()));
    }
    let host =
        uri.host().ok_or_else(|| CallError::Url("no host".into()))?.trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let address = format!("{host}:{port}");
    let tcp =
        tokio::net::TcpStream::connect(&address).await.map_err(|e| CallError::Connect(address.clone(), e))?;
    let connector = tokio_rustls::TlsConnector::from(client_config(webhook)?);
    let server_name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| CallError::Tls(e.to_string()))?;
    let tls = connector.connect(server_name, tcp).await.map_err(|e| CallError::Tls(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| CallError::Http(e.to_string()))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::post(path)
        .header(http::header::HOST, address.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .map_err(|e| CallError::Http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| CallError::Http(e.to_string()))?;
    let status = response.status();
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 3 * 1024 * 1024)
        .await
        .map_err(|e| CallError::Http(e.to_string()))?;
    if !status.is_success() {
        return Err(CallError::Http(format!("the server responded with {status}")));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::Http(format!("the response is not an AdmissionReview: {e}")))
}

/// TLS that trusts the configuration's `caBundle` (base64 of PEM certificates).
fn client_config(webhook: &Value) -> Result<Arc<rustls::ClientConfig>, CallError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = webhook["clientConfig"]["caBundle"].as_str() {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle.trim())
            .map_err(|e| CallError::Tls(format!("caBundle is not base64: {e}")))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| CallError::Tls(format!("caBundle: {e}")))?;
            roots.add(cert).map_err(|e| CallError::Tls(format!("caBundle: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CallError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
