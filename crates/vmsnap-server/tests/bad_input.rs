//! The bad-input suite: well over a hundred distinct hostile requests (bodies, patches, parameters,
//! names, headers, sizes, paths). Each gets the 4xx `Status` Kubernetes answers, with its reason and,
//! where Kubernetes words it, its message; none is a 500. Afterwards the server still answers and
//! the objects that existed before are exactly as they were.

mod support;

use http::Method;
use kube::Client;
use serde_json::{Value, json};
use support::{curl, get, send_bytes};
use vmsnap_testing::TestServer;

const NS: &str = "/api/v1/namespaces";
const SNAPS: &str = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots";
const RESTORES: &str = "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinerestores";
const VMS: &str = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines";
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const PVCS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const SMP: &str = "application/strategic-merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// One hostile request and what Kubernetes answers it.
struct Case {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
    /// A part of Kubernetes' message, where it has one.
    message: Option<&'static str>,
}

fn case(
    method: Method,
    path: impl Into<String>,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
    code: u16,
    reason: &'static str,
) -> Case {
    Case { method, path: path.into(), content_type: ct, body: body.into(), code, reason, message: None }
}

impl Case {
    fn says(mut self, message: &'static str) -> Case {
        self.message = Some(message);
        self
    }
}

fn snapshot(name: &str) -> Value {
    json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": name},
           "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}})
}

fn with(mut v: Value, pointer: &str, value: Value) -> String {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap()[key] = value;
    v.to_string()
}

fn without(mut v: Value, key: &str) -> String {
    v.as_object_mut().unwrap().remove(key);
    v.to_string()
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

fn vm(name: &str) -> Value {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
           "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}})
}

fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({}), |v, _| json!({ "a": v }))
}

fn protobuf_envelope(api_version: &str, kind: &str) -> Vec<u8> {
    let field = |n: u8, payload: &[u8]| [&[n << 3 | 2, payload.len() as u8][..], payload].concat();
    let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, b"")].concat()
}

/// Every case, a group at a time.
fn cases(rv: &str) -> Vec<Case> {
    use Method as M;
    let snap = snapshot("new");
    let ok = format!("{SNAPS}/ok");
    let cm = format!("{CMS}/cm");
    let mut cases = vec![
        // Bodies that are not an object of any kind.
        case(M::POST, SNAPS, JSON, "{\"apiVersion\": ", 400, "BadRequest").says("could not be decoded as JSON"),
        case(M::POST, SNAPS, YAML, "kind: [unclosed", 400, "BadRequest").says("error decoding YAML"),
        case(M::POST, SNAPS, JSON, "", 400, "BadRequest").says("the request body is empty"),
        case(M::POST, SNAPS, JSON, " \n\t ", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "[1,2]", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "\"a string\"", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "42", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "null", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, b"{\"kind\": \"\xff\xfe\"}".to_vec(), 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, format!("{snap} trailing"), 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "{\"a\": NaN}", 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, "[".repeat(100_000), 400, "BadRequest").says("recursion limit exceeded"),
        case(M::POST, SNAPS, JSON, nested(101).to_string(), 400, "BadRequest").says("nested 101 levels deep"),
        case(M::POST, SNAPS, YAML, "[".repeat(100_000), 400, "BadRequest"),
        case(M::POST, SNAPS, YAML, "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n", 400, "BadRequest"),
        case(M::POST, format!("{SNAPS}?fieldValidation=Strict"), YAML, "apiVersion: snapshot.kubevirt.io/v1beta1\nkind: VirtualMachineSnapshot\nmetadata:\n  name: y1\n  name: y2\nspec:\n  source: {apiGroup: kubevirt.io, kind: VirtualMachine, name: vm}\n", 400, "BadRequest").says("strict decoding error: duplicate field \"name\""),
        case(M::POST, SNAPS, YAML, "a: 1\n---\nb: 2\n", 400, "BadRequest"),
        case(M::POST, CMS, PROTOBUF, b"k8s\0\x0a\xff\xff".to_vec(), 400, "BadRequest").says("not a valid Kubernetes object"),
        case(M::POST, CMS, PROTOBUF, b"not protobuf".to_vec(), 400, "BadRequest"),
        case(M::POST, "/apis/apps/v1/namespaces/default/deployments", PROTOBUF, protobuf_envelope("apps/v1", "Deployment"), 415, "UnsupportedMediaType"),
        case(M::POST, SNAPS, "text/plain", snap.to_string(), 415, "UnsupportedMediaType").says("the body of the request was in an unknown format"),
        case(M::POST, SNAPS, "application/cbor", snap.to_string(), 415, "UnsupportedMediaType"),
        // apiVersion, kind and metadata.
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/kind", json!("Pod")), 400, "BadRequest").says("the kind in the data (Pod) does not match"),
        case(M::POST, SNAPS, JSON, without(snap.clone(), "kind"), 400, "BadRequest").says("Object 'Kind' is missing"),
        case(M::POST, SNAPS, JSON, without(snap.clone(), "apiVersion"), 400, "BadRequest").says("the API version in the data () does not match"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/apiVersion", json!("snapshot.kubevirt.io/v9")), 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/kind", json!(5)), 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata", json!("x")), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/namespace", json!("other")), 400, "BadRequest").says("does not match the namespace"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/resourceVersion", json!("1")), 400, "BadRequest").says("resourceVersion should not be set on objects to be created"),
        case(M::POST, SNAPS, JSON, snapshot("ok").to_string(), 409, "AlreadyExists").says("virtualmachinesnapshots.snapshot.kubevirt.io \"ok\" already exists"),
        // Names.
        case(M::POST, SNAPS, JSON, snapshot("Not_Valid").to_string(), 422, "Invalid").says("a lowercase RFC 1123 subdomain must consist of"),
        case(M::POST, SNAPS, JSON, snapshot("a/b").to_string(), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, snapshot(&"a".repeat(254)).to_string(), 422, "Invalid").says("must be no more than 253 characters"),
        case(M::POST, SNAPS, JSON, snapshot("").to_string(), 422, "Invalid").says("name or generateName is required"),
        case(M::POST, SNAPS, JSON, with(snapshot(""), "/metadata/generateName", json!("Bad_")), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, snapshot("..").to_string(), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, snapshot("snäp").to_string(), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, snapshot("-leading").to_string(), 422, "Invalid"),
        case(M::POST, NS, JSON, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}).to_string(), 422, "Invalid").says("a lowercase RFC 1123 label must consist of"),
        case(M::POST, NS, JSON, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n".repeat(64)}}).to_string(), 422, "Invalid"),
        case(M::POST, "/api/v1/namespaces/default/services", JSON, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1svc"}}).to_string(), 422, "Invalid").says("a DNS-1035 label"),
        // Fields and values.
        case(M::POST, format!("{SNAPS}?fieldValidation=Strict"), JSON, with(snap.clone(), "/spec/typo", json!(1)), 400, "BadRequest").says("strict decoding error: unknown field \"spec.typo\""),
        case(M::POST, format!("{SNAPS}?fieldValidation=Strict"), JSON, r#"{"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot", "metadata": {"name": "d", "name": "e"}, "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}}}"#, 400, "BadRequest").says("strict decoding error: duplicate field \"metadata.name\""),
        case(M::POST, format!("{SNAPS}?fieldValidation=Sometimes"), JSON, snap.to_string(), 400, "BadRequest"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/spec/source", json!("vm")), 422, "Invalid").says("spec.source in body must be of type object"),
        case(M::POST, SNAPS, JSON, without(snap.clone(), "spec"), 422, "Invalid").says("spec: Required value"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/spec/deletionPolicy", json!("Sometimes")), 422, "Invalid").says("Unsupported value: \"Sometimes\""),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/spec/source/apiGroup", json!("apps")), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/finalizers", json!("one")), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/labels", json!({"a": 1})), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/labels", json!({"bad key": "v"})), 422, "Invalid").says("name part must consist of alphanumeric characters"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/labels", json!({"k": "v".repeat(64)})), 422, "Invalid").says("must be no more than 63 characters"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/labels", json!({"/k": "v"})), 422, "Invalid").says("prefix part must be non-empty"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/annotations", json!({"a": "x".repeat(300 * 1024)})), 422, "Invalid").says("Too long: may not be more than 262144 bytes"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/annotations", json!({"a/b/c": "x"})), 422, "Invalid"),
        case(M::POST, SNAPS, JSON, with(snap.clone(), "/metadata/ownerReferences", json!("owner")), 422, "Invalid"),
        case(M::POST, RESTORES, JSON, json!({"apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": "r"}, "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm"}, "virtualMachineSnapshotName": "ok", "targetReadinessPolicy": "Whenever"}}).to_string(), 422, "Invalid"),
        case(M::POST, VMS, JSON, with(vm("v"), "/spec/runStrategy", json!("Sometimes")), 422, "Invalid").says("Invalid RunStrategy (Sometimes)"),
        case(M::POST, VMS, JSON, with(vm("v"), "/spec/template/spec/domain/resources", json!({"requests": {"memory": "garbage"}})), 422, "Invalid").says("in body should match"),
        case(M::POST, VMS, JSON, with(vm("v"), "/spec/template/spec/domain/resources", json!({"requests": {"memory": true}})), 422, "Invalid"),
        case(M::POST, PVCS, JSON, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "lots"}}}}).to_string(), 400, "BadRequest").says("quantities must match the regular expression"),
        case(M::POST, PVCS, JSON, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}).to_string(), 422, "Invalid").says("at least 1 access mode is required"),
        // Patches.
        case(M::PATCH, &ok, MERGE, "[1]", 400, "BadRequest"),
        case(M::PATCH, &ok, MERGE, "{\"metadata\":{\"name\":\"other\"}}", 400, "BadRequest").says("the name of the object (other) does not match the name on the URL (ok)"),
        case(M::PATCH, &ok, MERGE, "{\"spec\":{\"source\":{\"name\":\"y\"}}}", 422, "Invalid"),
        case(M::PATCH, &ok, MERGE, format!("{{\"metadata\":{{\"resourceVersion\":\"{}\"}}}}", 1), 409, "Conflict").says("the object has been modified"),
        case(M::PATCH, &ok, MERGE, json!({"spec": {"x": nested(101)}}).to_string(), 400, "BadRequest").says("levels deep"),
        case(M::PATCH, &ok, JSON_PATCH, "{\"op\":\"add\"}", 400, "BadRequest"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"add\",\"value\":1}]", 400, "BadRequest"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"explode\",\"path\":\"/spec\"}]", 400, "BadRequest"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"test\",\"path\":\"/metadata/name\",\"value\":\"no\"}]", 422, "Invalid"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"remove\",\"path\":\"/spec/nothing\"}]", 422, "Invalid"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"add\",\"path\":\"no-slash\",\"value\":1}]", 400, "BadRequest"),
        case(M::PATCH, &ok, JSON_PATCH, "[{\"op\":\"move\",\"from\":\"/spec\",\"path\":\"/spec/source/x\"}]", 422, "Invalid"),
        case(M::PATCH, &ok, JSON_PATCH, json!(vec![json!({"op": "test", "path": "/kind", "value": "VirtualMachineSnapshot"}); 10_001]).to_string(), 413, "RequestEntityTooLarge").says("The allowed maximum operations in a JSON patch is 10000, got 10001"),
        case(M::PATCH, &ok, SMP, "{}", 415, "UnsupportedMediaType"),
        case(M::PATCH, &cm, SMP, "{\"metadata\":{\"labels\":{\"$patch\":\"explode\"}}}", 400, "BadRequest").says("unknown patch type: explode in map"),
        case(M::PATCH, &cm, SMP, "{\"metadata\":{\"$retainKeys\":7}}", 400, "BadRequest").says("invalid patch format of retainKeys"),
        case(M::PATCH, &cm, SMP, "{\"metadata\":{\"$setElementOrder/finalizers\":{}}}", 400, "BadRequest").says("invalid patch format of setElementOrder list"),
        case(M::PATCH, &cm, SMP, "{\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":\"x\"}}", 400, "BadRequest").says("invalid patch format of primitive list"),
        case(M::PATCH, &cm, SMP, "{\"data\":{\"$retainKeys\":[\"a\"],\"b\":\"c\"}}", 422, "Invalid").says("patch content doesn't match retainKeys list"),
        case(M::PATCH, &cm, SMP, "[\"not\", \"a\", \"map\"]", 400, "BadRequest"),
        case(M::PATCH, &ok, APPLY, snapshot("ok").to_string(), 400, "BadRequest").says("fieldManager: Required value"),
        case(M::PATCH, format!("{ok}?fieldManager=x"), APPLY, snapshot("other").to_string(), 400, "BadRequest"),
        case(M::PATCH, format!("{CMS}/applied?fieldManager=intruder"), APPLY, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"owner": "intruder"}}).to_string(), 409, "Conflict").says("Apply failed with 1 conflict: conflict with \"setup\": .data.owner"),
        case(M::PATCH, &ok, "text/plain", "{}", 415, "UnsupportedMediaType"),
        case(M::PATCH, format!("{SNAPS}/missing"), MERGE, "{}", 404, "NotFound"),
        case(M::PATCH, format!("{cm}/status"), MERGE, "{}", 404, "NotFound"),
        // Replacing.
        case(M::PUT, &ok, JSON, snapshot("ok").to_string(), 422, "Invalid").says("must be specified for an update"),
        case(M::PUT, &ok, JSON, with(snapshot("ok"), "/metadata/resourceVersion", json!("1")), 409, "Conflict"),
        case(M::PUT, &ok, JSON, snapshot("other").to_string(), 400, "BadRequest").says("does not match the name on the URL"),
        case(M::PUT, format!("{SNAPS}/missing"), JSON, with(snapshot("missing"), "/metadata/resourceVersion", json!(rv)), 404, "NotFound"),
        case(M::PUT, &ok, JSON, "{", 400, "BadRequest"),
        // Query parameters.
        case(M::GET, format!("{SNAPS}?labelSelector=a%20in%20(b"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?labelSelector=!!a"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?labelSelector=a%3D%3D%3Db"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?fieldSelector=spec.x%3D1"), JSON, "", 400, "BadRequest").says("field label not supported"),
        case(M::GET, format!("{SNAPS}?fieldSelector=%3D%3D%3D"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?watch=true&resourceVersion=abc"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?watch=true&timeoutSeconds=abc"), JSON, "", 400, "BadRequest").says("strconv.ParseInt: parsing \"abc\": invalid syntax"),
        case(M::GET, format!("{SNAPS}?resourceVersion=-5"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?limit=many"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?limit=2&continue=garbage"), JSON, "", 400, "BadRequest"),
        case(M::GET, format!("{SNAPS}?limit=2&continue=eyJ4IjoxfQ"), JSON, "", 400, "BadRequest"),
        case(M::DELETE, format!("{SNAPS}/ok?propagationPolicy=Sideways"), JSON, "", 400, "BadRequest"),
        // Paths and methods.
        case(M::GET, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/nothings", JSON, "", 404, "NotFound"),
        case(M::GET, "/apis/nothing.example.com/v1/things", JSON, "", 404, "NotFound"),
        case(M::GET, "/apis/snapshot.kubevirt.io/v9/namespaces/default/virtualmachinesnapshots", JSON, "", 404, "NotFound"),
        case(M::GET, format!("{SNAPS}/missing"), JSON, "", 404, "NotFound").says("virtualmachinesnapshots.snapshot.kubevirt.io \"missing\" not found"),
        case(M::GET, "/apis/snapshot.kubevirt.io/v1beta1/virtualmachinesnapshots/ok", JSON, "", 404, "NotFound"),
        case(M::GET, "/api/v1/namespaces/default/persistentvolumes/x", JSON, "", 404, "NotFound"),
        case(M::GET, format!("{ok}/explode"), JSON, "", 404, "NotFound"),
        case(M::GET, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/default/virtualmachinesnapshots/ok/status/extra", JSON, "", 404, "NotFound"),
        case(M::GET, "/apis/snapshot.kubevirt.io/v1beta1/namespaces//virtualmachinesnapshots", JSON, "", 404, "NotFound"),
        case(M::GET, "/apis/%ff%fe/v1/things", JSON, "", 404, "NotFound"),
        case(M::GET, "/nothing/here", JSON, "", 404, "NotFound"),
        case(M::POST, "/apis/snapshot.kubevirt.io/v1beta1/namespaces/nowhere/virtualmachinesnapshots", JSON, snapshot("z").to_string(), 404, "NotFound").says("namespaces \"nowhere\" not found"),
        case(M::POST, &ok, JSON, snapshot("ok").to_string(), 405, "MethodNotAllowed"),
        case(M::PUT, SNAPS, JSON, snap.to_string(), 405, "MethodNotAllowed"),
        case(M::PATCH, SNAPS, MERGE, "{}", 405, "MethodNotAllowed"),
        case(M::OPTIONS, SNAPS, JSON, "", 405, "MethodNotAllowed"),
        case(M::PUT, "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/vm/explode", JSON, "{}", 404, "NotFound"),
        // Sizes.
        case(M::POST, CMS, JSON, with(configmap("big"), "/data/k", json!("a".repeat(3 * 1024 * 1024))), 413, "RequestEntityTooLarge").says("Request entity too large: limit is 3145728"),
        case(M::PATCH, &cm, MERGE, json!({"data": {"k": "a".repeat(3 * 1024 * 1024)}}).to_string(), 413, "RequestEntityTooLarge"),
        // Deletes.
        case(M::DELETE, &ok, JSON, "{not json", 400, "BadRequest"),
        case(M::DELETE, &ok, JSON, "{\"propagationPolicy\": \"Sideways\"}", 400, "BadRequest").says("propagationPolicy"),
        case(M::DELETE, &ok, JSON, "{\"preconditions\": {\"uid\": \"someone-else\"}}", 409, "Conflict").says("Precondition failed: UID in precondition: someone-else"),
        case(M::DELETE, &ok, JSON, "{\"preconditions\": {\"resourceVersion\": \"1\"}}", 409, "Conflict"),
        case(M::DELETE, format!("{SNAPS}/missing"), JSON, "", 404, "NotFound"),
        case(M::DELETE, &ok, "text/plain", "x", 415, "UnsupportedMediaType"),
    ];
    // A name of every length a label check could trip over, all past the limit.
    for len in [64, 100, 300] {
        cases.push(case(
            M::POST,
            NS,
            JSON,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x".repeat(len)}})
                .to_string(),
            422,
            "Invalid",
        ));
    }
    cases
}

/// Everything that existed before the suite, as it was.
async fn snapshot_of_objects(c: &Client) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [format!("{SNAPS}/ok"), format!("{CMS}/cm"), format!("{CMS}/applied"), format!("{VMS}/vm")] {
        let (code, obj) = get(c, &path).await;
        assert_eq!(code, 200, "{path}");
        out.push(obj);
    }
    out
}

#[tokio::test]
async fn hostile_requests_get_4xx_statuses_and_leave_the_server_and_its_objects_intact() {
    let server = TestServer::start().await.unwrap();
    let c = server.client().await.unwrap();
    let created = [
        (SNAPS, snapshot("ok")),
        (
            CMS,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}}),
        ),
        (VMS, vm("vm")),
    ];
    for (path, obj) in created {
        let (code, body) = support::post(&c, path, &obj).await;
        assert_eq!(code, 201, "{body}");
    }
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"owner": "setup"}});
    let (code, body) = support::send(
        &c,
        Method::PATCH,
        &format!("{CMS}/applied?fieldManager=setup"),
        APPLY,
        &applied.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let before = snapshot_of_objects(&c).await;
    let rv = before[0]["metadata"]["resourceVersion"].as_str().unwrap().to_owned();

    let cases = cases(&rv);
    assert!(cases.len() >= 100, "{} cases", cases.len());
    for Case { method, path, content_type, body, code, reason, message } in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        let (got, status) =
            send_bytes(&c, method.clone(), &path, &[("content-type", content_type)], body).await;
        assert_eq!(got, code, "{method} {path} {shown:?} -> {status}");
        assert_eq!(status["kind"], "Status", "{method} {path} {shown:?}");
        assert_eq!(status["code"], code, "{method} {path}");
        assert_eq!(status["reason"], reason, "{method} {path} {shown:?} -> {status}");
        let text = status["message"].as_str().unwrap_or_default();
        assert!(!text.is_empty(), "{method} {path}: a message");
        if let Some(fragment) = message {
            assert!(text.contains(fragment), "{method} {path} {shown:?}: {text:?} should say {fragment:?}");
        }
    }

    // Requests without the right token, on any path.
    let base = format!("http://{}", server.api.addr);
    for (path, token) in [
        (SNAPS, None),
        (SNAPS, Some("wrong")),
        (SNAPS, Some("")),
        ("//api/v1/namespaces", None),
        ("/version/../api/v1/secrets", None),
        ("/nothing", None),
    ] {
        let (code, status) = curl("GET", &format!("{base}{path}"), token, &[]).await;
        assert_eq!((code, status["reason"].as_str()), (401, Some("Unauthorized")), "{path} {token:?}");
    }

    let (code, _) = get(&c, "/healthz").await;
    assert_eq!(code, 200, "the server still answers");
    let (code, list) = get(&c, SNAPS).await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(1)), "nothing was created");
    assert_eq!(snapshot_of_objects(&c).await, before, "the objects are unchanged");
}
