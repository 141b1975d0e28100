//! POSIX shell quoting, so that commands shown to people can be pasted into a
//! shell and run exactly as shown.

use std::borrow::Cow;

fn is_safe_unquoted(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&byte)
}

/// Quotes one argument for a POSIX shell.
///
/// Arguments made only of characters that no shell treats specially are left
/// alone for readability; everything else is put in single quotes, inside
/// which every byte is literal, and each `'` becomes `'\''`. Any byte
/// sequence, even non-UTF-8, survives the round trip.
pub fn quote_bytes(arg: &[u8]) -> Cow<'_, [u8]> {
    if !arg.is_empty() && arg.iter().copied().all(is_safe_unquoted) {
        return Cow::Borrowed(arg);
    }
    let mut quoted = Vec::with_capacity(arg.len() + 2);
    quoted.push(b'\'');
    for &byte in arg {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    Cow::Owned(quoted)
}

/// [`quote_bytes`] for text.
pub fn quote(arg: &str) -> Cow<'_, str> {
    match quote_bytes(arg.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(arg),
        // Quoting only adds ASCII around and between the original bytes,
        // so valid UTF-8 stays valid.
        Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// Joins quoted arguments with spaces into one command line.
pub fn join<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    args.into_iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn plain_words_stay_unquoted() {
        assert_eq!(quote("--partition=ponline_p11"), "--partition=ponline_p11");
        assert_eq!(
            quote("/asap3/p11/shared/id_rsa"),
            "/asap3/p11/shared/id_rsa"
        );
    }

    #[test]
    fn special_characters_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("~user"), "'~user'");
        assert_eq!(quote("#x"), "'#x'");
        assert_eq!(join(["echo", "a;b", "*"]), "echo 'a;b' '*'");
    }

    #[test]
    fn quoted_arguments_survive_a_real_shell() {
        let tricky = [
            "",
            "a b",
            "it's",
            "'",
            "''",
            "\"$(id)\"",
            "`id`",
            "a\nb",
            "\\",
            "!x",
            "*?[a]",
            "{a,b}",
            "é ü",
            "-n",
        ];
        let script = format!("printf '%s\\0' {}", join(tricky));
        let output = match Command::new("sh").arg("-c").arg(&script).output() {
            Ok(output) => output,
            Err(error) => panic!("cannot run sh: {error}"),
        };
        let expected: Vec<u8> = tricky
            .iter()
            .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
            .collect();
        assert_eq!(output.stdout, expected, "{script}");
    }

    #[test]
    fn non_utf8_bytes_are_quoted_verbatim() {
        assert_eq!(quote_bytes(b"a\xffb").as_ref(), b"'a\xffb'");
    }
}
