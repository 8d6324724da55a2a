//! Events are stored once, as `v1` Events, and also served as `events.k8s.io/v1` Events.
//! Field mapping: regarding<->involvedObject, note<->message, reportingController<->reportingComponent
//! (and source.component), reportingInstance<->source.host, series.count<->count,
//! series.lastObservedTime<->lastTimestamp, deprecatedFirstTimestamp<->firstTimestamp.

use serde_json::{Value, json};

fn copy(from: &Value, from_key: &str, to: &mut Value, to_key: &str) {
    if let Some(v) = from.get(from_key).filter(|v| !v.is_null()) {
        to[to_key] = v.clone();
    }
}

/// `events.k8s.io/v1` -> stored core Event.
pub fn events_v1_to_core(ev: &Value) -> Value {
    let mut out = json!({ "apiVersion": "v1", "kind": "Event", "metadata": ev.get("metadata").cloned().unwrap_or(json!({})) });
    copy(ev, "regarding", &mut out, "involvedObject");
    copy(ev, "related", &mut out, "related");
    copy(ev, "note", &mut out, "message");
    copy(ev, "reason", &mut out, "reason");
    copy(ev, "type", &mut out, "type");
    copy(ev, "action", &mut out, "action");
    copy(ev, "eventTime", &mut out, "eventTime");
    copy(ev, "reportingController", &mut out, "reportingComponent");
    copy(ev, "reportingInstance", &mut out, "reportingInstance");
    copy(ev, "deprecatedFirstTimestamp", &mut out, "firstTimestamp");
    copy(ev, "deprecatedLastTimestamp", &mut out, "lastTimestamp");
    copy(ev, "deprecatedCount", &mut out, "count");
    copy(ev, "deprecatedSource", &mut out, "source");
    if out.get("source").is_none() {
        let mut source = json!({});
        copy(ev, "reportingController", &mut source, "component");
        copy(ev, "reportingInstance", &mut source, "host");
        out["source"] = source;
    }
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        out["series"] = json!({ "count": series["count"], "lastObservedTime": series["lastObservedTime"] });
        copy(series, "count", &mut out, "count");
        copy(series, "lastObservedTime", &mut out, "lastTimestamp");
    }
    if out.get("count").is_none() {
        out["count"] = json!(1);
    }
    if out.get("firstTimestamp").is_none()
        && let Some(t) = ev.get("eventTime").and_then(Value::as_str)
    {
        out["firstTimestamp"] = json!(seconds(t));
    }
    if out.get("lastTimestamp").is_none()
        && let Some(t) = out.get("firstTimestamp").cloned()
    {
        out["lastTimestamp"] = t;
    }
    out
}

/// Stored core Event -> `events.k8s.io/v1`.
pub fn core_to_events_v1(ev: &Value) -> Value {
    let mut out = json!({ "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": ev.get("metadata").cloned().unwrap_or(json!({})) });
    copy(ev, "involvedObject", &mut out, "regarding");
    copy(ev, "related", &mut out, "related");
    copy(ev, "message", &mut out, "note");
    copy(ev, "reason", &mut out, "reason");
    copy(ev, "type", &mut out, "type");
    copy(ev, "action", &mut out, "action");
    copy(ev, "eventTime", &mut out, "eventTime");
    copy(ev, "reportingInstance", &mut out, "reportingInstance");
    copy(ev, "firstTimestamp", &mut out, "deprecatedFirstTimestamp");
    copy(ev, "lastTimestamp", &mut out, "deprecatedLastTimestamp");
    copy(ev, "count", &mut out, "deprecatedCount");
    copy(ev, "source", &mut out, "deprecatedSource");
    match ev.get("reportingComponent").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
        Some(c) => out["reportingController"] = c.clone(),
        None => copy(&ev["source"], "component", &mut out, "reportingController"),
    }
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        out["series"] = series.clone();
    }
    out
}

/// Truncates a MicroTime to a Time (seconds).
fn seconds(t: &str) -> String {
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_event_reads_as_a_core_event_for_kubectl_describe() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "snap.1", "namespace": "default"},
            "regarding": {"kind": "VirtualMachineSnapshot", "name": "snap", "namespace": "default", "uid": "u"},
            "note": "Successfully created VirtualMachineSnapshotContent c", "reason": "SuccessfulVirtualMachineSnapshotContentCreate",
            "type": "Normal", "action": "Create", "eventTime": "2026-11-25T03:25:00.123456Z",
            "reportingController": "snapshot-controller", "reportingInstance": "vmsnap"
        });
        let core = events_v1_to_core(&ev);
        assert_eq!(core["involvedObject"]["name"], "snap");
        assert_eq!(core["message"], "Successfully created VirtualMachineSnapshotContent c");
        assert_eq!(core["source"]["component"], "snapshot-controller");
        assert_eq!(core["firstTimestamp"], "2026-11-25T03:25:00Z");
        assert_eq!(core["count"], 1);
        let back = core_to_events_v1(&core);
        assert_eq!(back["regarding"], ev["regarding"]);
        assert_eq!(back["note"], ev["note"]);
        assert_eq!(back["reportingController"], "snapshot-controller");
    }

    #[test]
    fn a_series_update_bumps_the_count_and_last_timestamp() {
        let ev = json!({"metadata": {}, "series": {"count": 3, "lastObservedTime": "2026-11-25T03:30:00.000000Z"}});
        let core = events_v1_to_core(&ev);
        assert_eq!(core["count"], 3);
        assert_eq!(core["lastTimestamp"], "2026-11-25T03:30:00.000000Z");
    }
}
