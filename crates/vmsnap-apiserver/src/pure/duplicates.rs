//! Keys set twice in one JSON object. serde_json keeps the last of them silently; kube-apiserver's
//! strict decoder (sigs.k8s.io/json) reports each as `duplicate field "spec.x"` (a path of the
//! enclosing keys joined by `.`, list positions as `[i]`).

/// The paths of the duplicated keys of a JSON document, in the order they occur. Text that is not
/// valid JSON yields what was found before the error (the parser reports the error itself).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut scanner = Scanner { bytes: json, pos: 0, found: Vec::new() };
    let mut path = Vec::new();
    scanner.value(&mut path, 0);
    scanner.found
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    found: Vec<String>,
}

/// Deeper documents are refused by the JSON parser anyway; this bounds the recursion.
const MAX_DEPTH: usize = 200;

fn render(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !part.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, path: &mut Vec<String>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'{' => self.object(path, depth),
            b'[' => self.array(path, depth),
            b'"' => self.string().map(drop),
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    fn object(&mut self, path: &mut Vec<String>, depth: usize) -> Option<()> {
        self.pos += 1;
        let mut seen = std::collections::HashSet::new();
        loop {
            self.skip_ws();
            match self.peek()? {
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                b',' => self.pos += 1,
                b'"' => {
                    let key = self.string()?;
                    if !seen.insert(key.clone()) {
                        path.push(key.clone());
                        self.found.push(render(path));
                        path.pop();
                    }
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    path.push(key);
                    let result = self.value(path, depth + 1);
                    path.pop();
                    result?;
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, path: &mut Vec<String>, depth: usize) -> Option<()> {
        self.pos += 1;
        let mut index = 0;
        loop {
            self.skip_ws();
            match self.peek()? {
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                b',' => self.pos += 1,
                _ => {
                    let before = self.pos;
                    path.push(format!("[{index}]"));
                    let result = self.value(path, depth + 1);
                    path.pop();
                    result?;
                    if self.pos == before {
                        return None;
                    }
                    index += 1;
                }
            }
        }
    }

    /// A string token, unescaped through serde_json.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => return serde_json::from_slice(&self.bytes[start..self.pos]).ok(),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_duplicates_in_ordinary_documents() {
        assert!(duplicate_fields(br#"{"a": 1, "b": {"a": [1, {"a": 2}]}, "c": "x\"y"}"#).is_empty());
    }

    #[test]
    fn duplicates_are_reported_with_their_path() {
        let doc = br#"{"spec": {"x": 1, "list": [{"n": 1, "n": 2}], "x": 2}, "kind": "A", "kind": "B"}"#;
        assert_eq!(duplicate_fields(doc), vec!["spec.list[0].n", "spec.x", "kind"]);
    }

    #[test]
    fn escaped_keys_compare_unescaped_and_garbage_does_not_panic() {
        assert_eq!(duplicate_fields(br#"{"a": 1, "\u0061": 2}"#), vec!["a"]);
        for junk in [&b"{"[..], b"{\"a\"", b"[[[", b"\"", b"{\"a\":}", b"}}", b"[}", b"[,}", b"{\"a\":]"] {
            let _ = duplicate_fields(junk);
        }
    }
}
