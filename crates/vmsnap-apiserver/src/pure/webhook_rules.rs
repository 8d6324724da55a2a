//! Which requests a validating webhook is sent, from its `rules`, `namespaceSelector` and
//! `objectSelector` (admissionregistration.k8s.io/v1), as kube-apiserver matches them.

use serde_json::{Map, Value};

/// What is being admitted.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    /// API group (`""` for the core group).
    pub group: &'a str,
    /// Version of the request.
    pub version: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
    /// Subresource (`status`), if any.
    pub subresource: Option<&'a str>,
    /// Whether the kind is namespaced.
    pub namespaced: bool,
}

fn list_has(list: &Value, wanted: &str) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

/// Whether one `rules[]` entry (a RuleWithOperations) covers the request.
pub fn rule_matches(rule: &Value, a: &Attributes<'_>) -> bool {
    let resource_matches = rule["resources"].as_array().is_some_and(|resources| {
        resources.iter().filter_map(Value::as_str).any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            let res_ok = res == "*" || res == a.resource;
            let sub_ok = match a.subresource {
                None => sub.is_empty(),
                Some(s) => sub == "*" || sub == s,
            };
            res_ok && sub_ok
        })
    });
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !a.namespaced,
        "Namespaced" => a.namespaced,
        _ => true,
    };
    list_has(&rule["operations"], a.operation)
        && list_has(&rule["apiGroups"], a.group)
        && list_has(&rule["apiVersions"], a.version)
        && resource_matches
        && scope_ok
}

/// Whether a LabelSelector (`matchLabels`, `matchExpressions`) selects `labels`; an absent or
/// empty selector selects everything. An operator it does not know selects nothing.
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let match_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k).is_some_and(|l| Some(l) == v.as_str())));
    let expressions = selector["matchExpressions"].as_array().is_none_or(|list| {
        list.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let in_values = |v: &str| e["values"].as_array().is_some_and(|vs| vs.iter().any(|x| x == v));
            match e["operator"].as_str().unwrap_or_default() {
                "In" => label(key).is_some_and(in_values),
                "NotIn" => label(key).is_none_or(|v| !in_values(v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
    });
    match_labels && expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(op: &'a str, resource: &'a str, sub: Option<&'a str>) -> Attributes<'a> {
        Attributes { operation: op, group: "", version: "v1", resource, subresource: sub, namespaced: true }
    }

    #[test]
    fn rules_match_operations_groups_versions_resources_and_scope() {
        let rule = json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]});
        assert!(rule_matches(&rule, &attrs("CREATE", "configmaps", None)));
        assert!(!rule_matches(&rule, &attrs("UPDATE", "configmaps", None)));
        assert!(!rule_matches(&rule, &attrs("CREATE", "secrets", None)));
        assert!(!rule_matches(&rule, &attrs("CREATE", "configmaps", Some("status"))));
        let any = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"], "scope": "Cluster"});
        assert!(!rule_matches(&any, &attrs("DELETE", "configmaps", Some("status"))), "namespaced");
        let status = json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["configmaps/status"]});
        assert!(rule_matches(&status, &attrs("UPDATE", "configmaps", Some("status"))));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"team": "a", "tier": "db"});
        let labels = labels.as_object().unwrap();
        assert!(selector_matches(&Value::Null, labels));
        assert!(selector_matches(&json!({"matchLabels": {"team": "a"}}), labels));
        assert!(!selector_matches(&json!({"matchLabels": {"team": "b"}}), labels));
        let exprs = json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "web"]},
                                                 {"key": "gone", "operator": "DoesNotExist"}]});
        assert!(selector_matches(&exprs, labels));
        assert!(!selector_matches(
            &json!({"matchExpressions": [{"key": "team", "operator": "Exists2"}]}),
            labels
        ));
    }
}
