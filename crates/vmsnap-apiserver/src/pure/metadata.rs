//! Validation of `metadata.labels` and `metadata.annotations`, with apimachinery's messages
//! (`ValidateLabels`, `ValidateAnnotations` of Kubernetes 1.33): label keys and annotation keys
//! are qualified names, label values at most 63 characters of a restricted alphabet, and all
//! annotations together at most 256 KiB.

use serde_json::Value;

use super::names::NameRule;
use super::validation::Cause;

/// The most bytes all annotations of an object may hold together (keys and values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else if let Err(messages) = NameRule::Subdomain.check(prefix) {
                errors.extend(messages.into_iter().map(|m| format!("prefix part {m}")));
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_owned());
    }
    if !is_qualified_name_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    errors
}

/// apimachinery's `IsValidLabelValue`.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(LABEL_VALUE_MSG.to_owned());
    }
    errors
}

fn invalid(field: &str, value: &str, message: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.to_owned(),
        message: format!("Invalid value: {value:?}: {message}"),
    }
}

/// The problems of an object's labels and annotations (already checked to be string maps by
/// the schema), in key order.
pub fn validate(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let field = "metadata.labels";
    if let Some(labels) = object.pointer("/metadata/labels").and_then(Value::as_object) {
        for (key, value) in labels {
            causes.extend(qualified_name_errors(key).into_iter().map(|m| invalid(field, key, m)));
            let value = value.as_str().unwrap_or_default();
            causes.extend(label_value_errors(value).into_iter().map(|m| invalid(field, value, m)));
        }
    }
    let field = "metadata.annotations";
    if let Some(annotations) = object.pointer("/metadata/annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (key, value) in annotations {
            // Annotation keys are qualified names in any case.
            let lowered = key.to_lowercase();
            causes.extend(qualified_name_errors(&lowered).into_iter().map(|m| invalid(field, key, m)));
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: field.to_owned(),
                message: format!("Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            });
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn good_labels_and_annotations_pass() {
        let obj = json!({"metadata": {
            "labels": {"app": "web", "kubevirt.io/vm": "my-vm", "empty": "", "A_b.c": "X_y.Z"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"any\": \"thing\"}", "Upper/Case": "x"}
        }});
        assert_eq!(validate(&obj), Vec::new());
    }

    #[test]
    fn bad_label_keys_get_apimachinery_messages() {
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert!(qualified_name_errors("a/b/c")[0].starts_with("a qualified name must consist of"));
        assert_eq!(qualified_name_errors("/x"), vec!["prefix part must be non-empty"]);
        assert!(
            qualified_name_errors("Example.com/x")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert_eq!(
            qualified_name_errors(&"k".repeat(64)),
            vec!["name part must be no more than 63 characters".to_owned()]
        );
        assert_eq!(qualified_name_errors("-x")[0], format!("name part {QUALIFIED_NAME_MSG}"));
    }

    #[test]
    fn bad_label_values_and_the_field_they_are_reported_on() {
        let obj = json!({"metadata": {"labels": {"app": "has space"}}});
        let causes = validate(&obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata.labels");
        assert_eq!(causes[0].message, format!("Invalid value: \"has space\": {LABEL_VALUE_MSG}"));
        assert_eq!(label_value_errors(&"v".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn annotations_are_limited_to_256_kib_in_total() {
        let half = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT / 2);
        let obj = json!({"metadata": {"annotations": {"a": half, "b": half}}});
        let causes = validate(&obj);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueTooLong");
        assert_eq!(causes[0].message, "Too long: may not be more than 262144 bytes");
    }
}
