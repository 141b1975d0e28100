//! The one way a value from a user or a file reaches a message or a log line:
//! escaped, so it cannot forge a line or a field, and bounded, so a
//! megabyte-sized value cannot flood slurmd's log at every step.

/// How many characters of an untrusted value are shown: enough to recognise
/// any real id, name or path, few enough that a hostile one costs one line.
pub const SHOWN_CHARS: usize = 80;

/// `value` in double quotes with quotes, backslashes and control characters
/// escaped (Rust's `{:?}` rules), cut after [`SHOWN_CHARS`] characters; a cut
/// value says how long it was, so an admin reading the log knows it was cut.
pub fn shown(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let rest = chars.count();
    if rest == 0 {
        format!("{head:?}")
    } else {
        format!("{head:?}… ({} characters)", SHOWN_CHARS + rest)
    }
}

/// `value` as it is when it is a plain token (an id, a name: what real input
/// is, so messages and `key=value` log fields read naturally), else
/// [`shown`]: a space or `=` could otherwise start a forged field.
pub fn shown_token(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().count() <= SHOWN_CHARS
        && value.chars().all(|ch| {
            ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '/' | '+' | ':')
        });
    if plain {
        value.to_owned()
    } else {
        shown(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_value_is_quoted_with_control_characters_escaped() {
        assert_eq!(shown("p11"), "\"p11\"");
        assert_eq!(shown("a\nb\"c\\"), "\"a\\nb\\\"c\\\\\"");
    }

    #[test]
    fn a_long_value_is_cut_and_says_how_long_it_was() {
        let long = "1".repeat(100_000);
        let text = shown(&long);
        assert_eq!(text, format!("\"{}\"… (100000 characters)", "1".repeat(80)));
        assert_eq!(shown(&"1".repeat(80)), format!("\"{}\"", "1".repeat(80)));
    }

    #[test]
    fn a_plain_token_stays_bare_anything_else_is_quoted() {
        assert_eq!(shown_token("11099001"), "11099001");
        assert_eq!(shown_token("c20210823_000_MAA"), "c20210823_000_MAA");
        assert_eq!(shown_token(""), "\"\"");
        assert_eq!(
            shown_token("1 decision=accepted"),
            "\"1 decision=accepted\""
        );
        assert_eq!(shown_token("1\nfake"), "\"1\\nfake\"");
        let long = "1".repeat(81);
        assert_eq!(
            shown_token(&long),
            format!("\"{}\"… (81 characters)", "1".repeat(80))
        );
    }
}
