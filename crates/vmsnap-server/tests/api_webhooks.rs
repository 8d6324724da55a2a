//! ValidatingWebhookConfigurations are called as kube-apiserver calls them (before: stored and
//! never called, so a policy webhook a user installed was silently ignored): an `AdmissionReview`
//! v1 over HTTPS trusting the `caBundle`, for the requests the rules and selectors select, with
//! `failurePolicy` and `timeoutSeconds` deciding about webhooks that fail.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post as route_post;
use base64::Engine;
use serde_json::{Value, json};
use support::post;
use vmsnap_testing::TestServer;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const WEBHOOKS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

/// The requests a test webhook received: (operation, name).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A policy webhook: refuses objects labelled `policy=deny`.
async fn review(State(seen): State<Seen>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    let request = &body["request"];
    seen.lock().unwrap().push((
        request["operation"].as_str().unwrap_or_default().to_owned(),
        request["name"].as_str().unwrap_or_default().to_owned(),
    ));
    let object = if request["object"].is_null() { &request["oldObject"] } else { &request["object"] };
    let deny = object.pointer("/metadata/labels/policy") == Some(&json!("deny"));
    let mut response = json!({"uid": request["uid"], "allowed": !deny});
    if deny {
        response["status"] = json!({"code": 403, "reason": "Forbidden", "message": "objects labelled policy=deny are not allowed"});
    }
    axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

async fn slow(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "response": {"uid": body["request"]["uid"], "allowed": true}}))
}

/// Serves the test webhook over TLS on 127.0.0.1; returns its port and the caBundle.
async fn serve_webhook(seen: Seen) -> (u16, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(cert.cert.pem());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = axum::Router::new()
        .route("/validate", route_post(review))
        .route("/slow", route_post(slow))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, ca_bundle)
}

fn configuration(name: &str, webhook: Value) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": name}, "webhooks": [webhook]})
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}})
}

fn rules() -> Value {
    json!([{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}])
}

#[tokio::test]
async fn a_policy_webhook_is_called_for_what_its_rules_and_selectors_select() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let seen: Seen = Arc::default();
    let (port, ca_bundle) = serve_webhook(seen.clone()).await;
    let webhook = json!({
        "name": "policy.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": ca_bundle},
        "rules": rules(),
        "objectSelector": {"matchExpressions": [{"key": "policy", "operator": "Exists"}]},
    });
    let (code, body) = post(&c, WEBHOOKS, &configuration("policy", webhook)).await;
    assert_eq!(code, 201, "{body}");

    let (code, status) = post(&c, CONFIGMAPS, &configmap("denied", json!({"policy": "deny"}))).await;
    assert_eq!((code, status["reason"].as_str()), (403, Some("Forbidden")), "{status}");
    assert_eq!(
        status["message"],
        "admission webhook \"policy.example.com\" denied the request: objects labelled policy=deny are not allowed"
    );
    let (code, body) = post(&c, CONFIGMAPS, &configmap("allowed", json!({"policy": "allow"}))).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(&c, CONFIGMAPS, &configmap("unlabelled", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("CREATE".to_owned(), "denied".to_owned()), ("CREATE".to_owned(), "allowed".to_owned())],
        "the object selector kept the unlabelled ConfigMap from the webhook"
    );

    // An update that adds the label is refused too (the new object matches); a delete is sent.
    let label = json!({"metadata": {"labels": {"policy": "deny"}}}).to_string();
    let (code, status) = support::send(
        &c,
        http::Method::PATCH,
        &format!("{CONFIGMAPS}/unlabelled"),
        "application/merge-patch+json",
        &label,
    )
    .await;
    assert_eq!(code, 403, "{status}");
    let (code, _) =
        support::send(&c, http::Method::DELETE, &format!("{CONFIGMAPS}/allowed"), "application/json", "")
            .await;
    assert_eq!(code, 200);
    assert_eq!(seen.lock().unwrap().last().unwrap(), &("DELETE".to_owned(), "allowed".to_owned()));

    // A namespace selector that the namespace does not match: not called.
    let mut narrowed = configuration("policy", json!({}));
    narrowed["webhooks"] = json!([{
        "name": "policy.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
        "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate"), "caBundle": ca_bundle},
        "rules": rules(), "namespaceSelector": {"matchLabels": {"team": "storage"}}
    }]);
    let (_, current) = support::get(&c, &format!("{WEBHOOKS}/policy")).await;
    narrowed["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    let (code, body) = support::send(
        &c,
        http::Method::PUT,
        &format!("{WEBHOOKS}/policy"),
        "application/json",
        &narrowed.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) =
        post(&c, CONFIGMAPS, &configmap("other-namespace-rule", json!({"policy": "deny"}))).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn failure_policy_and_timeout_decide_about_webhooks_that_fail() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let (port, ca_bundle) = serve_webhook(Arc::default()).await;
    // A closed port: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = |policy: &str| {
        json!({"name": "down.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
               "failurePolicy": policy, "rules": rules(),
               "clientConfig": {"url": format!("https://127.0.0.1:{closed}/validate"), "caBundle": ca_bundle}})
    };
    assert_eq!(post(&c, WEBHOOKS, &configuration("down", unreachable("Fail"))).await.0, 201);
    let (code, status) = post(&c, CONFIGMAPS, &configmap("a", json!({}))).await;
    assert_eq!((code, status["reason"].as_str()), (500, Some("InternalError")), "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: Post \"https://127.0.0.1:{closed}/validate\": dial tcp"
        )),
        "{message}"
    );
    // Webhook configurations themselves are never sent to webhooks: the broken one can go.
    let (code, _) =
        support::send(&c, http::Method::DELETE, &format!("{WEBHOOKS}/down"), "application/json", "").await;
    assert_eq!(code, 200);
    assert_eq!(post(&c, WEBHOOKS, &configuration("down", unreachable("Ignore"))).await.0, 201);
    let (code, body) = post(&c, CONFIGMAPS, &configmap("b", json!({}))).await;
    assert_eq!(code, 201, "failurePolicy Ignore: {body}");

    let slow = json!({"name": "slow.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "timeoutSeconds": 1, "rules": rules(),
                      "clientConfig": {"url": format!("https://127.0.0.1:{port}/slow"), "caBundle": ca_bundle}});
    assert_eq!(post(&c, WEBHOOKS, &configuration("slow", slow)).await.0, 201);
    let started = std::time::Instant::now();
    let (code, status) = post(&c, CONFIGMAPS, &configmap("c", json!({}))).await;
    assert_eq!(code, 500, "{status}");
    assert!(status["message"].as_str().unwrap().ends_with("context deadline exceeded"), "{status}");
    assert!(started.elapsed() < Duration::from_secs(4), "timeoutSeconds bounds the call");
}

#[tokio::test]
async fn vmsnaps_own_webhook_reviews_the_embedded_servers_requests() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let lookup = Arc::new(vmsnap_webhook::KubeLookup(c.clone()));
    let config = vmsnap_webhook::WebhookConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_dir: None,
        host: "localhost".into(),
    };
    let webhook = vmsnap_webhook::serve(lookup, config).await.unwrap();
    let ca_bundle =
        base64::engine::general_purpose::STANDARD.encode(webhook.self_signed_pem.clone().unwrap());
    let registration = json!({
        "name": "virtualmachinesnapshot-validator.snapshot.kubevirt.io", "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {"url": format!("https://127.0.0.1:{}{}", webhook.addr.port(), vmsnap_webhook::SNAPSHOT_PATH), "caBundle": ca_bundle},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["snapshot.kubevirt.io"], "apiVersions": ["v1beta1"], "resources": ["virtualmachinesnapshots"]}]
    });
    assert_eq!(post(&c, WEBHOOKS, &configuration("kubevirt-snapshots", registration)).await.0, 201);
    let snapshot = json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "s"},
                          "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}});
    let (code, body) =
        post(&c, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots", &snapshot)
            .await;
    assert_eq!(code, 201, "the webhook read the AdmissionReview and allowed it: {body}");
}

/// KubeVirt's functional tests deny VolumeSnapshot creation with a webhook whose service does not
/// exist and `failurePolicy: Fail` (`createDenyVolumeSnapshotCreateWebhook`): every matching request
/// is refused with kube-apiserver's "service not found" failure, and nothing is dialled.
#[tokio::test]
async fn a_webhook_naming_a_service_that_does_not_exist_fails_its_requests_under_fail() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let deny = json!({"name": "dummy-webhook-deny.kubevirt.io", "admissionReviewVersions": ["v1", "v1beta1"],
        "sideEffects": "None", "failurePolicy": "Fail", "rules": rules(),
        "objectSelector": {"matchLabels": {"snapshot.kubevirt.io/source-vm-name": "vm"}},
        "clientConfig": {"service": {"namespace": "default", "name": "nonexistent", "path": "/foobar"}}});
    assert_eq!(post(&c, WEBHOOKS, &configuration("deny", deny)).await.0, 201);
    let (code, status) =
        post(&c, CONFIGMAPS, &configmap("selected", json!({"snapshot.kubevirt.io/source-vm-name": "vm"})))
            .await;
    assert_eq!((code, status["reason"].as_str()), (500, Some("InternalError")), "{status}");
    assert_eq!(
        status["message"],
        "Internal error occurred: failed calling webhook \"dummy-webhook-deny.kubevirt.io\": failed to call webhook: Post \"https://nonexistent.default.svc:443/foobar?timeout=10s\": service \"nonexistent\" not found"
    );
    let (code, _) = post(&c, CONFIGMAPS, &configmap("other", json!({"app": "x"}))).await;
    assert_eq!(code, 201, "the object selector limits the webhook");
}
