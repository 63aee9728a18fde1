//! Reading Prometheus text exposition (what `GET /metrics` answers) in tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of `text` (comments skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("label value is quoted");
        labels.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// The value of the one series `name` whose labels include `labels`; `None` when absent.
/// Panics when more than one series matches (the test asked an ambiguous question).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<Sample> = parse(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} series: {matching:?}",
        matching.len()
    );
    matching.first().map(|s| s.value)
}

/// A whole-number value (a counter, a count of jobs) of the series as in [`value`]; 0 when it
/// does not exist (a counter never incremented).
pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let v = value(text, name, labels).unwrap_or(0.0);
    assert!(
        v >= 0.0 && v.fract() == 0.0 && v < 1e15,
        "{name} {labels:?} = {v} is not a count"
    );
    format!("{v}").parse().expect("a whole number")
}
