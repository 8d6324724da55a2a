//! Deterministic names of scheduled snapshots, and label selectors as query strings.

use jiff::Timestamp;
use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::naming::get_name;

/// Kubernetes' limit for a label value, and the length scheduled snapshot names are cut to so
/// that they can stand in one (and read well in `kubectl get`).
pub const NAME_LIMIT: usize = 63;

/// The snapshot a run of `schedule` at `run_time` makes of `vm`: `<schedule>-<vm>-<yyyymmddhhmm>`
/// (UTC), cut to [`NAME_LIMIT`] with a hash of the whole base as KubeVirt's `naming.GetName` does.
/// The same inputs always give the same name, so a run retried after a crash finds the snapshot
/// it made instead of making a second one.
pub fn snapshot_name(schedule: &str, vm: &str, run_time: Timestamp) -> String {
    let stamp = run_time.strftime("%Y%m%d%H%M").to_string();
    get_name(&format!("{schedule}-{vm}"), &stamp, NAME_LIMIT)
}

/// A label selector in the query form of `?labelSelector=` (`a=b,c in (d,e),!f`), or an error
/// naming an operator the API would refuse (admission refuses them first).
pub fn selector_query(selector: &LabelSelector) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        parts.push(format!("{key}={value}"));
    }
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            "DoesNotExist" => format!("!{}", expr.key),
            other => {
                return Err(format!("selector operator {other:?} is not In, NotIn, Exists or DoesNotExist"));
            }
        });
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests {
    use vmsnap_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    #[test]
    fn names_carry_the_run_minute_in_utc_and_fit_the_limit() {
        let at: Timestamp = "2025-03-30T01:07:59+02:00".parse().unwrap();
        assert_eq!(snapshot_name("nightly", "db", at), "nightly-db-202503292307");
        let long = snapshot_name(&"s".repeat(40), &"v".repeat(40), at);
        assert_eq!(long.len(), NAME_LIMIT);
        assert!(long.ends_with("-202503292307"), "{long}");
        assert_eq!(long, snapshot_name(&"s".repeat(40), &"v".repeat(40), at), "deterministic");
        assert_ne!(long, snapshot_name(&"s".repeat(40), &"w".repeat(40), at), "the hash tells VMs apart");
    }

    #[test]
    fn selectors_become_query_strings() {
        let expr = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let selector = LabelSelector {
            match_labels: Some([("tier".to_string(), "db".to_string())].into()),
            match_expressions: Some(vec![
                expr("zone", "In", &["a", "b"]),
                expr("env", "NotIn", &["dev"]),
                expr("backup", "Exists", &[]),
                expr("skip", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(selector_query(&selector).unwrap(), "tier=db,zone in (a,b),env notin (dev),backup,!skip");
        assert_eq!(selector_query(&LabelSelector::default()).unwrap(), "");
        assert!(
            selector_query(&LabelSelector {
                match_expressions: Some(vec![expr("a", "Near", &[])]),
                ..Default::default()
            })
            .is_err()
        );
    }
}
