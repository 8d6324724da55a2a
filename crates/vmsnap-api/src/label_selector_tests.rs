//! The parser against Kubernetes' own: the accept/reject, parse-output, canonical-form and
//! matching cases of k8s.io/apimachinery/pkg/labels/selector_test.go (kubernetes/apimachinery at
//! eed236ce: TestSelectorParse, TestSelectorMatches, TestSetSelectorParser, TestParseOperator,
//! TestRequirementConstructor, TestToString), restated as tables over the text form.

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement { key: key.into(), operator, values: values.iter().map(|v| v.to_string()).collect() }
}

/// TestSelectorParse: accepted, and printed back as the input without its spaces.
#[test]
fn kubernetes_good_strings_parse_and_print_back() {
    let good = ["x=a,y=b,z=c", "", "x!=a,y=b", "x=", "x= ", "x=,z= ", "x= ,z= ", "!x", "x>1", "x>1,z<5"];
    for text in good {
        let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(selector.to_string(), text.replace(' ', ""), "{text:?} printed back");
    }
}

/// TestSelectorParse's bad strings, TestSetSelectorParser's invalid ones, TestParseOperator's
/// refused operators and TestRequirementConstructor's invalid keys and values, as text.
#[test]
fn kubernetes_bad_strings_are_refused() {
    let long = "a".repeat(254);
    let bad = [
        "x=a||y=b",
        "x==a==b",
        "!x=a",
        "x<a",
        "x,,y",
        ",x,y",
        "x nott in (y)",
        "a in (xyz),",
        "a in (xyz)b notin ()",
        "a in (xyz abc)",
        "a notin(",
        "a (",
        "(",
        // TestParseOperator: `!`, `exists` and `(` are not binary operators.
        "x !",
        "x exists",
        "x (",
        // TestRequirementConstructor: a key over 253, a value over 63 characters, a blank in a
        // value, `>` without an integer.
        &long,
        &format!("x16={long}"),
        "x17=a b",
        "x13>",
        "x14>bar",
        "x15<bar",
    ];
    for text in bad {
        assert!(Selector::parse(text).is_err(), "{text:?} was accepted: {:?}", Selector::parse(text));
    }
}

/// TestSetSelectorParser: the requirements each valid text parses to (sorted by key).
#[test]
fn kubernetes_set_based_selectors_parse_to_their_requirements() {
    use Operator::*;
    let cases: Vec<(&str, Vec<Requirement>)> = vec![
        ("", vec![]),
        ("\rx", vec![req("x", Exists, &[])]),
        (
            "this-is-a-dns.domain.com/key-with-dash",
            vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
        ),
        (
            "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            vec![req("this-is-another-dns.domain.com/key-with-dash", In, &["so", "what"])],
        ),
        (
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            vec![req("0.1.2.domain/99", NotIn, &["10.10.100.1", "tick.tack.clock"])],
        ),
        ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
        ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
        ("x  notin\t\t\t(abc,def)", vec![req("x", NotIn, &["abc", "def"])]),
        ("x in (abc,def)", vec![req("x", In, &["abc", "def"])]),
        ("x in (abc,)", vec![req("x", In, &["", "abc"])]),
        ("x in (abc,abc)", vec![req("x", In, &["abc"])]),
        ("x in ()", vec![req("x", In, &[""])]),
        ("x in (a,,)", vec![req("x", In, &["", "a"])]),
        ("x in (a,,,)", vec![req("x", In, &["", "a"])]),
        ("x in (a,,,,,,)", vec![req("x", In, &["", "a"])]),
        ("x in (a,,a,,a,,a,,)", vec![req("x", In, &["", "a"])]),
        (
            "x notin (abc,,def),bar,z in (),w",
            vec![
                req("bar", Exists, &[]),
                req("w", Exists, &[]),
                req("x", NotIn, &["", "abc", "def"]),
                req("z", In, &[""]),
            ],
        ),
        ("x,y in (a)", vec![req("x", Exists, &[]), req("y", In, &["a"])]),
        ("x=a", vec![req("x", Equals, &["a"])]),
        ("x>1", vec![req("x", GreaterThan, &["1"])]),
        ("x<7", vec![req("x", LessThan, &["7"])]),
        ("x=a,y!=b", vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"])]),
        (
            "x=a,y!=b,z in (h,i,j)",
            vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"]), req("z", In, &["h", "i", "j"])],
        ),
        ("x notin ( )", vec![req("x", NotIn, &[""])]),
        ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
        ("a ", vec![req("a", Exists, &[])]),
        // `in` and `notin` are values inside a list.
        ("a in (x,y,notin, z,in)", vec![req("a", In, &["in", "notin", "x", "y", "z"])]),
        // TestParseOperator's accepted operators.
        ("x==1", vec![req("x", DoubleEquals, &["1"])]),
    ];
    for (text, expected) in cases {
        let parsed = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(parsed.0, expected, "{text:?}");
    }
}

/// TestToString: the canonical form of parsed selectors.
#[test]
fn kubernetes_canonical_form() {
    let cases = [
        ("x in (def,abc),y notin (jkl),z", "x in (abc,def),y notin (jkl),z"),
        ("x notin (abc,def),y!=jkl,!z", "x notin (abc,def),y!=jkl,!z"),
        ("x notin (abc),y in (jkl,mno),z notin ()", "x notin (abc),y in (jkl,mno),z notin ()"),
        ("x=abc,y==jkl,z!=a,z", "x=abc,y==jkl,z!=a,z"),
        ("x>2,y<8,z", "x>2,y<8,z"),
    ];
    for (text, canonical) in cases {
        assert_eq!(Selector::parse(text).unwrap().to_string(), canonical, "{text:?}");
    }
}

/// TestSelectorMatches.
#[test]
fn kubernetes_matching() {
    let yes: &[(&str, &[(&str, &str)])] = &[
        ("", &[("x", "y")]),
        ("x=y", &[("x", "y")]),
        ("x=y,z=w", &[("x", "y"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "a")]),
        ("notin=in", &[("notin", "in")]),
        ("x", &[("x", "z")]),
        ("!x", &[("y", "z")]),
        ("x>1", &[("x", "2")]),
        ("x<1", &[("x", "0")]),
        ("foo=bar", &[("foo", "bar"), ("baz", "blah")]),
        ("baz=blah", &[("foo", "bar"), ("baz", "blah")]),
        ("foo=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")]),
    ];
    let no: &[(&str, &[(&str, &str)])] = &[
        ("x=z", &[]),
        ("x=y", &[("x", "z")]),
        ("x=y,z=w", &[("x", "w"), ("z", "w")]),
        ("x!=y,z!=w", &[("x", "z"), ("z", "w")]),
        ("x", &[("y", "z")]),
        ("!x", &[("x", "z")]),
        ("x>1", &[("x", "0")]),
        ("x<1", &[("x", "2")]),
        ("foo=blah", &[("foo", "bar"), ("baz", "blah")]),
        ("baz=bar", &[("foo", "bar"), ("baz", "blah")]),
        ("foo=bar,foobar=bar,baz=blah", &[("foo", "bar"), ("baz", "blah")]),
    ];
    for (text, set) in yes {
        assert!(Selector::parse(text).unwrap().matches(&labels(set)), "{text:?} should match {set:?}");
    }
    for (text, set) in no {
        assert!(!Selector::parse(text).unwrap().matches(&labels(set)), "{text:?} should not match {set:?}");
    }
}

#[test]
fn errors_name_the_term_at_fault() {
    let e = Selector::parse("a=b,e in (x,y,f notin (z)").unwrap_err();
    assert_eq!(e.term, "e in (x,y,f notin (z)");
    let e = Selector::parse("tier=db,zone in (a b),!legacy").unwrap_err();
    assert_eq!(e.term, "zone in (a b)");
    assert_eq!(e.message, "found 'b', expected: ',' or ')'");
    assert_eq!(
        e.to_string(),
        "unable to parse requirement \"zone in (a b)\": found 'b', expected: ',' or ')'"
    );
    let e = Selector::parse("a=b,,c").unwrap_err();
    assert_eq!(e.term, "");
    let e = Selector::parse("Bad_Key!/x=1").unwrap_err();
    assert_eq!(e.term, "Bad_Key!/x=1");
}

#[test]
fn a_selector_converts_into_a_metav1_label_selector() {
    let s = Selector::parse("a=b,c!=d,e in (x,y),f notin (z),g,!h,a==b2").unwrap();
    let converted = serde_json::to_value(s.to_label_selector().unwrap()).unwrap();
    assert_eq!(
        converted,
        serde_json::json!({
            "matchLabels": {"a": "b"},
            "matchExpressions": [
                {"key": "a", "operator": "In", "values": ["b2"]},
                {"key": "c", "operator": "NotIn", "values": ["d"]},
                {"key": "e", "operator": "In", "values": ["x", "y"]},
                {"key": "f", "operator": "NotIn", "values": ["z"]},
                {"key": "g", "operator": "Exists"},
                {"key": "h", "operator": "DoesNotExist"},
            ]
        })
    );
    let e = Selector::parse("tier=db,n>1").unwrap().to_label_selector().unwrap_err();
    assert_eq!(e.term, "n>1");
}

#[test]
fn a_metav1_label_selector_reads_back_as_text() {
    let text = "a=b,c!=d,e in (x,y),f notin (z),g,!h";
    let converted = Selector::parse(text).unwrap().to_label_selector().unwrap();
    let back = Selector::try_from(&converted).unwrap();
    assert_eq!(back.to_string(), "a=b,c notin (d),e in (x,y),f notin (z),g,!h");
    assert_eq!(Selector::parse(&back.to_string()).unwrap().to_label_selector().unwrap(), converted);
    let odd = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "n".into(),
            operator: "Gt".into(),
            values: None,
        }]),
        ..Default::default()
    };
    assert_eq!(Selector::try_from(&odd).unwrap_err().term, "n Gt");
}
