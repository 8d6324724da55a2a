//! The JSONPath subset used by printer columns: `.a.b`, `[0]`, `[*]` and `[?(@.key=='value')]`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter { path: Vec<String>, value: String },
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==")?;
                let value = rhs.trim().trim_matches(|c| c == '\'' || c == '"').to_owned();
                steps.push(Step::Filter { path: lhs.trim().split('.').map(str::to_owned).collect(), value });
            } else {
                let key = inner.trim_matches(|c| c == '\'' || c == '"');
                steps.push(Step::Field(key.to_owned()));
            }
        } else {
            return None;
        }
    }
    Some(steps)
}

/// Evaluates `path` on `object` and returns every match, in order.
pub fn eval_all(object: &Value, path: &str) -> Vec<Value> {
    let Some(steps) = parse(path) else { return Vec::new() };
    let mut current = vec![object.clone()];
    for step in &steps {
        let mut next = Vec::new();
        for v in &current {
            match step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f) {
                        next.push(x.clone());
                    }
                }
                Step::Index(i) => {
                    if let Some(x) = v.get(*i) {
                        next.push(x.clone());
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter().cloned()),
                    Value::Object(m) => next.extend(m.values().cloned()),
                    _ => {}
                },
                Step::Filter { path, value } => {
                    for item in v.as_array().into_iter().flatten() {
                        let mut cur = Some(item);
                        for p in path {
                            cur = cur.and_then(|c| c.get(p));
                        }
                        let matches = match cur {
                            Some(Value::String(s)) => s == value,
                            Some(Value::Bool(b)) => b.to_string() == *value,
                            Some(Value::Number(n)) => n.to_string() == *value,
                            _ => false,
                        };
                        if matches {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        current = next;
    }
    current.into_iter().filter(|v| !v.is_null()).collect()
}

/// The first match, as printer columns use it.
pub fn eval_first(object: &Value, path: &str) -> Option<Value> {
    eval_all(object, path).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_indexes_and_filters() {
        let o = json!({"status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.2"}],
            "conditions": [{"type": "Paused", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(eval_first(&o, ".status.phase"), Some(json!("Running")));
        assert_eq!(eval_first(&o, ".status.interfaces[0].ipAddress"), Some(json!("10.0.0.2")));
        assert_eq!(eval_first(&o, ".status.conditions[?(@.type=='Ready')].status"), Some(json!("True")));
        assert_eq!(eval_all(&o, ".status.conditions[*].type"), vec![json!("Paused"), json!("Ready")]);
        assert_eq!(eval_first(&o, ".status.missing"), None);
    }

    #[test]
    fn garbage_paths_match_nothing() {
        assert!(eval_all(&json!({"a": 1}), "a..b[").is_empty());
        assert!(eval_all(&json!({"a": 1}), "..").is_empty());
    }
}
