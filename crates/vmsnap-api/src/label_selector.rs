//! Label selectors in their text form, as `kubectl get -l` and the `labelSelector` query parameter
//! take them: `a=b,c!=d,e in (x,y),f notin (z),g,!h,n>1`. One parser for the API server (list and
//! watch) and the CLI (`vmsnap schedule create --selector`), with the grammar and the rules of
//! Kubernetes' own (`Parse` in k8s.io/apimachinery/pkg/labels, whose test cases
//! `label_selector_tests.rs` ports): `in` and `notin` are words only where an operator is
//! expected, `x in ()` and `x=` select the empty value, keys are qualified names and values label
//! values, `>`/`<` take an integer. A parsed selector matches label sets, prints back in
//! Kubernetes' canonical form and converts into a `metav1.LabelSelector`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::Value;

/// How a requirement compares a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key`: the label is set.
    Exists,
    /// `!key`: the label is not set.
    DoesNotExist,
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value` (also when the label is not set).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (also when the label is not set).
    NotIn,
    /// `key>n`: the label is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label is an integer less than `n`.
    LessThan,
}

/// One requirement: `key`, `operator` and its values (sorted, without repeats; none for
/// `Exists`/`DoesNotExist`, one for the comparisons).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: Operator,
    /// The values.
    pub values: Vec<String>,
}

/// A parsed selector: every requirement must hold. Sorted by key (stably), as Kubernetes sorts
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

/// Why a selector is not one: the term at fault (`e in (x`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    /// The term (text between top-level commas) where parsing failed; empty for an empty term.
    pub term: String,
    /// What is wrong, in the words of Kubernetes' parser where it has some.
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.term.is_empty() {
            write!(f, "unable to parse requirement: an empty term: {}", self.message)
        } else {
            write!(f, "unable to parse requirement {:?}: {}", self.term, self.message)
        }
    }
}

impl std::error::Error for SelectorError {}

impl Selector {
    /// Parses the text form; the empty text selects everything.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser { text, tokens: lex(text), pos: 0 };
        let mut requirements = parser.requirements()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.0.is_empty() || self.matches(&labels_of(object))
    }

    /// The same selection as a `metav1.LabelSelector`: equalities in `matchLabels` (a key's
    /// second equality as an `In` expression), `!=` as `NotIn` with one value, the rest as
    /// `In`/`NotIn`/`Exists`/`DoesNotExist` expressions. `>` and `<` have no such form: an error
    /// naming the requirement.
    pub fn to_label_selector(&self) -> Result<LabelSelector, SelectorError> {
        let mut labels = BTreeMap::new();
        let mut expressions = Vec::new();
        for r in &self.0 {
            let operator = match r.operator {
                Operator::Equals | Operator::DoubleEquals if !labels.contains_key(&r.key) => {
                    labels.insert(r.key.clone(), r.values[0].clone());
                    continue;
                }
                Operator::Equals | Operator::DoubleEquals | Operator::In => "In",
                Operator::NotEquals | Operator::NotIn => "NotIn",
                Operator::Exists => "Exists",
                Operator::DoesNotExist => "DoesNotExist",
                Operator::GreaterThan | Operator::LessThan => {
                    return Err(SelectorError {
                        term: r.to_string(),
                        message: "a metav1.LabelSelector has no '>' or '<' (its operators are In, NotIn, Exists and DoesNotExist)".into(),
                    });
                }
            };
            let values = matches!(operator, "In" | "NotIn").then(|| r.values.clone());
            expressions.push(LabelSelectorRequirement {
                key: r.key.clone(),
                operator: operator.into(),
                values,
            });
        }
        Ok(LabelSelector {
            match_labels: (!labels.is_empty()).then_some(labels),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        })
    }
}

impl TryFrom<&LabelSelector> for Selector {
    type Error = SelectorError;

    /// A `metav1.LabelSelector` as requirements: `matchLabels` as equalities, then the
    /// expressions in their order; an operator other than In, NotIn, Exists and DoesNotExist is
    /// an error naming the expression.
    fn try_from(selector: &LabelSelector) -> Result<Selector, SelectorError> {
        let labels = selector.match_labels.iter().flatten();
        let mut requirements: Vec<Requirement> = labels
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        for e in selector.match_expressions.iter().flatten() {
            let operator = match e.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError {
                        term: format!("{} {other}", e.key),
                        message: format!("operator {other:?} is not In, NotIn, Exists or DoesNotExist"),
                    });
                }
            };
            requirements.push(Requirement {
                key: e.key.clone(),
                operator,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        Ok(Selector(requirements))
    }
}

impl Requirement {
    /// Whether a label with this `value` (`None`: not set) satisfies the requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        let compare = |v: &str, wanted: std::cmp::Ordering| {
            let (Ok(label), Some(Ok(bound))) =
                (v.parse::<i64>(), self.values.first().map(|b| b.parse::<i64>()))
            else {
                return false;
            };
            label.cmp(&bound) == wanted
        };
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(listed),
            Operator::GreaterThan => value.is_some_and(|v| compare(v, std::cmp::Ordering::Greater)),
            Operator::LessThan => value.is_some_and(|v| compare(v, std::cmp::Ordering::Less)),
        }
    }
}

/// Kubernetes' canonical form (`Selector.String()`): no spaces, set values sorted.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, values) = (&self.key, self.values.join(","));
        match self.operator {
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::Equals => write!(f, "{key}={values}"),
            Operator::DoubleEquals => write!(f, "{key}=={values}"),
            Operator::NotEquals => write!(f, "{key}!={values}"),
            Operator::In => write!(f, "{key} in ({values})"),
            Operator::NotIn => write!(f, "{key} notin ({values})"),
            Operator::GreaterThan => write!(f, "{key}>{values}"),
            Operator::LessThan => write!(f, "{key}<{values}"),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self.0.iter().map(Requirement::to_string).collect();
        f.write_str(&terms.join(","))
    }
}

/// The labels of an object (`metadata.labels`).
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Identifier,
    /// `in`: an operator after a key, a value elsewhere.
    InWord,
    /// `notin`: likewise.
    NotInWord,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    text: String,
    start: usize,
}

impl Token {
    /// The token where a value may stand: the words `in` and `notin` are values there.
    fn as_value(&self) -> Kind {
        match self.kind {
            Kind::InWord | Kind::NotInWord => Kind::Identifier,
            kind => kind,
        }
    }

    /// How an error message shows it.
    fn shown(&self) -> String {
        match self.kind {
            Kind::End => "the end of the selector".into(),
            _ => format!("'{}'", self.text),
        }
    }
}

fn is_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn symbol(text: &str) -> Option<Kind> {
    Some(match text {
        "!" => Kind::Bang,
        "=" => Kind::Equals,
        "==" => Kind::DoubleEquals,
        "!=" => Kind::NotEquals,
        ">" => Kind::Greater,
        "<" => Kind::Less,
        "(" => Kind::Open,
        ")" => Kind::Close,
        "," => Kind::Comma,
        _ => return None,
    })
}

/// Splits the text into words and operators: a run of symbol characters is cut into the longest
/// operators it starts with (`!=` then `(`), blanks separate, anything else is part of a word.
fn lex(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        if is_blank(c) {
            i += 1;
        } else if is_symbol(c) {
            // Every single symbol is an operator; take a second one when the pair is one too.
            let pair: String = chars[i..].iter().take(2).map(|(_, c)| *c).collect();
            let (kind, len) = match symbol(&pair) {
                Some(kind) if pair.chars().count() == 2 => (kind, 2),
                _ => (symbol(&c.to_string()).expect("a symbol character is an operator"), 1),
            };
            tokens.push(Token { kind, text: chars[i..i + len].iter().map(|(_, c)| *c).collect(), start });
            i += len;
        } else {
            let mut word = String::new();
            while i < chars.len() && !is_symbol(chars[i].1) && !is_blank(chars[i].1) {
                word.push(chars[i].1);
                i += 1;
            }
            let kind = match word.as_str() {
                "in" => Kind::InWord,
                "notin" => Kind::NotInWord,
                _ => Kind::Identifier,
            };
            tokens.push(Token { kind, text: word, start });
        }
    }
    tokens.push(Token { kind: Kind::End, text: String::new(), start: text.len() });
    tokens
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.pos].clone();
        if token.kind != Kind::End {
            self.pos += 1;
        }
        token
    }

    /// The term starting at byte `start`: up to the next comma outside parentheses.
    fn term_at(&self, start: usize) -> String {
        let mut depth = 0i32;
        let rest = &self.text[start..];
        let end = rest
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                *c == ',' && depth <= 0
            })
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].trim().to_owned()
    }

    /// `requirement (',' requirement)*`, or nothing at all.
    fn requirements(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let first = self.peek().clone();
            match first.as_value() {
                Kind::Identifier | Kind::Bang => {}
                Kind::End if requirements.is_empty() => return Ok(requirements),
                _ => {
                    let expected = if requirements.is_empty() {
                        "!, identifier, or 'end of string'"
                    } else {
                        "identifier after ','"
                    };
                    return Err(SelectorError {
                        term: self.term_at(first.start),
                        message: format!("found {}, expected: {expected}", first.shown()),
                    });
                }
            }
            let requirement = self
                .requirement()
                .map_err(|message| SelectorError { term: self.term_at(first.start), message })?;
            requirements.push(requirement);
            let after = self.next();
            match after.kind {
                Kind::End => return Ok(requirements),
                Kind::Comma => {}
                _ => {
                    return Err(SelectorError {
                        term: self.term_at(first.start),
                        message: format!("found {}, expected: ',' or 'end of string'", after.shown()),
                    });
                }
            }
        }
    }

    /// `[!] key [operator values]`.
    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = self.peek().kind == Kind::Bang;
        if negated {
            self.next();
        }
        let key = self.next();
        if key.as_value() != Kind::Identifier {
            return Err(format!("found {}, expected: identifier", key.shown()));
        }
        check_key(&key.text)?;
        let ends = matches!(self.peek().kind, Kind::End | Kind::Comma);
        if negated || ends {
            let operator = if negated { Operator::DoesNotExist } else { Operator::Exists };
            return Ok(Requirement { key: key.text, operator, values: Vec::new() });
        }
        let op = self.next();
        let operator = match op.kind {
            Kind::InWord => Operator::In,
            Kind::NotInWord => Operator::NotIn,
            Kind::Equals => Operator::Equals,
            Kind::DoubleEquals => Operator::DoubleEquals,
            Kind::NotEquals => Operator::NotEquals,
            Kind::Greater => Operator::GreaterThan,
            Kind::Less => Operator::LessThan,
            _ => return Err(format!("found {}, expected: in, notin, =, ==, !=, gt, lt", op.shown())),
        };
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        values.sort();
        values.dedup();
        for value in &values {
            check_value(&key.text, value)?;
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) && values[0].parse::<i64>().is_err()
        {
            return Err(format!("for '>' and '<' the value must be an integer, not {:?}", values[0]));
        }
        Ok(Requirement { key: key.text, operator, values })
    }

    /// `( v1, v2, ... )`: empty entries (`(a,,b)`, `()`) are the empty value.
    fn value_set(&mut self) -> Result<Vec<String>, String> {
        let open = self.next();
        if open.kind != Kind::Open {
            return Err(format!("found {}, expected: '('", open.shown()));
        }
        let mut values = Vec::new();
        // Whether the next entry starts here (after '(' or ','), so a ',' or ')' means an empty one.
        let mut at_entry = true;
        loop {
            let token = self.next();
            match token.as_value() {
                Kind::Identifier if at_entry => {
                    values.push(token.text);
                    at_entry = false;
                }
                Kind::Comma | Kind::Close if at_entry => {
                    values.push(String::new());
                    if token.kind == Kind::Close {
                        return Ok(values);
                    }
                }
                Kind::Comma => at_entry = true,
                Kind::Close => return Ok(values),
                _ if at_entry => {
                    return Err(format!("found {}, expected: ',', ')' or identifier", token.shown()));
                }
                _ => return Err(format!("found {}, expected: ',' or ')'", token.shown())),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; none (`x=`, `x=,y`) is the empty value.
    fn exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek().kind, Kind::End | Kind::Comma) {
            return Ok(String::new());
        }
        let token = self.next();
        match token.as_value() {
            Kind::Identifier => Ok(token.text),
            _ => Err(format!("found {}, expected: identifier", token.shown())),
        }
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most `max` characters (Kubernetes' qualified
/// name part and label value).
fn name_problem(text: &str, max: usize) -> Option<String> {
    let inner_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if text.len() > max {
        return Some(format!("must be no more than {max} characters"));
    }
    let ends_ok = text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ends_ok || !text.chars().all(inner_ok)).then(|| {
        "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into()
    })
}

/// A DNS-1123 subdomain: lowercase labels of `[a-z0-9-]` starting and ending alphanumeric, joined
/// by dots, at most 253 characters.
fn subdomain_problem(text: &str) -> Option<String> {
    if text.len() > 253 {
        return Some("the prefix must be no more than 253 characters".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (!text.split('.').all(label_ok)).then(|| {
        "the prefix must be a DNS subdomain: lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character".into()
    })
}

/// A label key is a qualified name: `[prefix/]name`.
fn check_key(key: &str) -> Result<(), String> {
    let problem = match key.split_once('/') {
        Some((_, name)) if name.contains('/') => Some("a key has at most one '/'".into()),
        Some((prefix, name)) => subdomain_problem(prefix).or_else(|| name_problem(name, 63)),
        None => name_problem(key, 63),
    };
    match problem {
        Some(why) => Err(format!("invalid label key {key:?}: {why}")),
        None => Ok(()),
    }
}

/// A label value: empty, or a name of at most 63 characters.
fn check_value(key: &str, value: &str) -> Result<(), String> {
    match name_problem(value, 63).filter(|_| !value.is_empty()) {
        Some(why) => Err(format!("invalid label value {value:?} for key {key:?}: {why}")),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "label_selector_tests.rs"]
mod tests;
