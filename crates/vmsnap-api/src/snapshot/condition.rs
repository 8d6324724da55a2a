//! Conditions and errors shared by the three snapshot kinds, with KubeVirt's update rule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A condition as KubeVirt's snapshot API writes it. `lastProbeTime` is always present (and `null`),
/// as Go's `metav1.Time` with `omitempty` serializes a zero time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Failure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Never set by the controllers.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_probe_time: Option<Time>,
    /// When the status or reason last changed.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub last_transition_time: Option<Time>,
    /// Why, in words (KubeVirt puts messages such as "Operation complete" here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// More detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    /// A condition of `type_` with status `True` or `False` and a reason.
    pub fn new(type_: &str, status: bool, reason: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            last_probe_time: None,
            last_transition_time: None,
            reason: Some(reason.into()),
            message: None,
        }
    }

    /// The same condition with a message.
    pub fn with_message(mut self, message: Option<String>) -> Self {
        self.message = message;
        self
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// KubeVirt's `updateCondition`: replace a condition of the same type only when its status or reason
/// changed (stamping `lastTransitionTime` with `now`); append a new type at the end.
///
/// vmsnap also keeps the message current when only the message changed (the transition time is kept
/// then): KubeVirt's controllers leave messages empty, vmsnap's put the cause of a wait there.
pub fn update_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Time) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status != new.status || existing.reason != new.reason {
                new.last_transition_time = Some(now);
                *existing = new;
            } else if existing.message != new.message {
                existing.message = new.message;
            }
        }
        None => {
            new.last_transition_time = Some(now);
            conditions.push(new);
        }
    }
}

/// Find a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// An error recorded in a snapshot status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotError {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::timestamp")]
    pub time: Option<Time>,
    /// What.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn a_new_condition_type_is_appended_with_a_transition_time() {
        let mut conds = vec![Condition::new("Progressing", true, "a")];
        update_condition(&mut conds, Condition::new("Ready", false, "Not ready"), t(5));
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1].type_, "Ready");
        assert_eq!(conds[1].last_transition_time, Some(t(5)));
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let mut conds = Vec::new();
        update_condition(&mut conds, Condition::new("Ready", false, "Not ready"), t(1));
        update_condition(&mut conds, Condition::new("Ready", false, "Not ready"), t(9));
        assert_eq!(conds[0].last_transition_time, Some(t(1)));
    }

    #[test]
    fn a_changed_reason_replaces_the_condition_in_place() {
        let mut conds = Vec::new();
        update_condition(&mut conds, Condition::new("Progressing", true, "x"), t(1));
        update_condition(&mut conds, Condition::new("Ready", false, "Not ready"), t(1));
        update_condition(&mut conds, Condition::new("Progressing", false, "Operation complete"), t(2));
        assert_eq!(conds[0].type_, "Progressing");
        assert_eq!(conds[0].reason.as_deref(), Some("Operation complete"));
        assert_eq!(conds[0].last_transition_time, Some(t(2)));
    }

    #[test]
    fn a_changed_message_alone_is_kept_current_without_a_transition() {
        let mut conds = Vec::new();
        update_condition(&mut conds, Condition::new("Progressing", true, "x"), t(1));
        let with_cause = Condition::new("Progressing", true, "x").with_message(Some("refused".into()));
        update_condition(&mut conds, with_cause, t(2));
        assert_eq!(conds[0].message.as_deref(), Some("refused"));
        assert_eq!(conds[0].last_transition_time, Some(t(1)));
    }

    #[test]
    fn last_probe_time_serializes_as_null_like_kubevirt() {
        let json = serde_json::to_value(Condition::new("Ready", true, "Ready")).unwrap();
        assert!(json.get("lastProbeTime").unwrap().is_null());
    }
}
