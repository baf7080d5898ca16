//! The conventions a checkpoint adds to safetensors: how state is named and how its numbers
//! are written. The reader and the writer both take them from here.

use std::collections::BTreeMap;

use super::Corruption;

/// The header key of the metadata map, which no tensor may be called.
pub(super) const METADATA_KEY: &str = "__metadata__";

/// Metadata keys under this prefix hold a state's numbers: `"state/optimizer"`.
pub(super) const STATE_VALUES_PREFIX: &str = "state/";

/// Between a state's name and its key in a tensor name: `"optimizer/exp_avg.fc1.weight"`.
/// Parameter names never hold it.
pub(super) const STATE_SEPARATOR: char = '/';

/// The largest header safetensors readers accept (the Rust crate's and so Python's limit).
pub(super) const HEADER_LIMIT: u64 = 100_000_000;

/// The tensor name of array `key` of state `state`.
pub(super) fn state_tensor_name(state: &str, key: &str) -> String {
    format!("{state}{STATE_SEPARATOR}{key}")
}

/// `Some((state, key))` for a state tensor's name, `None` for a parameter's.
pub(super) fn split_state_tensor_name(name: &str) -> Option<(&str, &str)> {
    name.split_once(STATE_SEPARATOR)
}

/// Why a state name cannot be saved, if it cannot.
pub(super) fn invalid_state_name(state: &str) -> Option<&'static str> {
    if state.is_empty() {
        Some("a state name must not be empty")
    } else if state.contains(STATE_SEPARATOR) {
        Some("a state name must not contain '/'")
    } else {
        None
    }
}

/// A state's numbers as a JSON object of decimal strings, `{"lr":"0.001","step":"120.0"}`.
///
/// Strings, not JSON numbers, because they round-trip exactly: Rust writes the shortest
/// decimal that reads back to the same `f64` and reads decimals correctly rounded, and
/// non-finite values have a spelling (`NaN`, `inf`, `-inf`) that Python's `float()` reads too.
/// Only NaN payloads are lost.
pub(super) fn encode_values(values: &BTreeMap<String, f64>) -> Result<String, serde_json::Error> {
    let text: BTreeMap<&str, String> = values
        .iter()
        .map(|(key, value)| (key.as_str(), format!("{value:?}")))
        .collect();
    serde_json::to_string(&text)
}

/// The inverse of [`encode_values`].
pub(super) fn decode_values(state: &str, json: &str) -> Result<BTreeMap<String, f64>, Corruption> {
    let text: BTreeMap<String, String> =
        serde_json::from_str(json).map_err(|source| Corruption::StateValues {
            state: state.to_owned(),
            source,
        })?;
    text.into_iter()
        .map(|(key, value)| match value.trim().parse::<f64>() {
            Ok(x) => Ok((key, x)),
            Err(_) => Err(Corruption::StateValue {
                state: state.to_owned(),
                key,
                value,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_exactly_even_where_json_numbers_would_not() {
        let values: BTreeMap<String, f64> = [
            ("sum", 0.1 + 0.2),
            ("tiny", 5e-324),
            ("huge", 1.797_693_134_862_315_7e308),
            ("neg_zero", -0.0),
            ("step", 120.0),
            ("inf", f64::INFINITY),
            ("ninf", f64::NEG_INFINITY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let json = encode_values(&values).expect("strings serialize");
        let back = decode_values("optimizer", &json).expect("it was just written");
        let bits = |m: &BTreeMap<String, f64>| m.values().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
        let nan = decode_values("s", r#"{"x":"NaN"}"#).expect("NaN is spelled");
        assert!(nan["x"].is_nan());
    }

    #[test]
    fn malformed_values_name_the_state_and_the_key() {
        let err = decode_values("optimizer", r#"{"step":"ten"}"#).unwrap_err();
        assert!(
            matches!(&err, Corruption::StateValue { state, key, value }
                if state == "optimizer" && key == "step" && value == "ten"),
            "{err:?}"
        );
        let err = decode_values("optimizer", r#"{"step":10}"#).unwrap_err();
        assert!(matches!(err, Corruption::StateValues { .. }), "{err:?}");
    }

    #[test]
    fn state_tensor_names_split_at_the_first_slash() {
        let name = state_tensor_name("optimizer", "exp_avg.fc1.weight");
        assert_eq!(name, "optimizer/exp_avg.fc1.weight");
        assert_eq!(
            split_state_tensor_name(&name),
            Some(("optimizer", "exp_avg.fc1.weight"))
        );
        assert_eq!(split_state_tensor_name("a/b/c"), Some(("a", "b/c")));
        assert_eq!(split_state_tensor_name("fc1.weight"), None);
        assert!(invalid_state_name("opt/im").is_some());
        assert!(invalid_state_name("").is_some());
        assert!(invalid_state_name("optimizer").is_none());
    }
}
