//! Typed access to the keys of one JSON object of a metadata file: accepted
//! spellings, "absent" values, and errors that name the key path.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::MetadataProblem;
use super::model::{Person, Timestamp};
use crate::id::{check_name, NameKind};
use crate::untrusted::{shown, shown_token};

/// A value's type as the messages name it: "found a list".
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Whether a key of the file is a spelling of the format's key `spelling`:
/// equal but for case, `-` and `_`, the ways the format's own spellings of a
/// key differ (`corePath`, `core-path`) and a hand-edited file would, and
/// for what makes a key only look like another (#21): white space, invisible
/// characters (a zero-width space) and fullwidth letters (`ｂｅａｍｌｉｎｅ`).
fn same_key(key: &str, spelling: &str) -> bool {
    let letters = |text: &str| {
        text.chars()
            .filter(|ch| !matches!(ch, '-' | '_') && !ch.is_whitespace() && !is_invisible(*ch))
            .map(from_fullwidth)
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    letters(key) == letters(spelling)
}

/// Characters that show as nothing: zero-width spaces and joiners, direction
/// marks, the soft hyphen, variation selectors, the byte order mark, tags.
fn is_invisible(ch: char) -> bool {
    matches!(ch,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// The ASCII character a fullwidth form (U+FF01 to U+FF5E) stands for.
fn from_fullwidth(ch: char) -> char {
    match ch {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(ch as u32 - 0xFEE0).unwrap_or(ch),
        _ => ch,
    }
}

fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty() || text == "None",
        _ => false,
    }
}

/// One JSON object of the file together with its key path, so every error
/// can say where it is.
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    /// The top-level object, whose keys are named without a prefix.
    pub(super) fn top(map: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            map,
            at: String::new(),
        }
    }

    /// The keys of this object that hold a present value (not null, "" or
    /// "None"), as the file spells them.
    pub(super) fn present_keys(&self) -> Vec<&'a str> {
        self.map
            .iter()
            .filter(|(_, value)| {
                !is_absent(value) && !matches!(value, Value::Array(items) if items.is_empty())
            })
            .map(|(key, _)| key.as_str())
            .collect()
    }

    pub(super) fn key(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    /// The value of the key `spellings` name (the format's spellings of one
    /// key, current first), with the key path it was found at, if it holds a
    /// present value. A key spelled another way (`Beamline`, `user_account`)
    /// or two spellings of one key (`corePath` and `core-path`) are refused:
    /// readers differ in which one they take, as with a repeated key.
    pub(super) fn lookup(
        &self,
        spellings: &[&str],
    ) -> Result<Option<(String, &'a Value)>, MetadataProblem> {
        let mut spelled = self
            .map
            .iter()
            .filter(|(key, _)| spellings.iter().any(|spelling| same_key(key, spelling)));
        match (spelled.next(), spelled.next()) {
            (None, _) => Ok(None),
            (Some((first, _)), Some((second, _))) => Err(MetadataProblem::KeySpelledTwice {
                first: self.key(&shown_token(first)),
                second: self.key(&shown_token(second)),
            }),
            (Some((key, value)), None) if spellings.contains(&key.as_str()) => {
                Ok((!is_absent(value)).then(|| (self.key(key), value)))
            }
            (Some((key, _)), None) => Err(MetadataProblem::KeyMisspelled {
                found: self.key(&shown_token(key)),
                expected: self.key(spellings[0]),
            }),
        }
    }

    /// A present string value together with the key path it was found at.
    fn text_entry(&self, spellings: &[&str]) -> Result<Option<(String, &'a str)>, MetadataProblem> {
        match self.lookup(spellings)? {
            None => Ok(None),
            Some((key, Value::String(text))) => Ok(Some((key, text))),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "a string",
                found: type_name(other),
            }),
        }
    }

    pub(super) fn text(&self, spellings: &[&str]) -> Result<Option<&'a str>, MetadataProblem> {
        Ok(self.text_entry(spellings)?.map(|(_, text)| text))
    }

    pub(super) fn owned_text(&self, spellings: &[&str]) -> Result<Option<String>, MetadataProblem> {
        Ok(self.text(spellings)?.map(str::to_owned))
    }

    pub(super) fn required_text(
        &self,
        spellings: &[&str],
        expected: &'static str,
    ) -> Result<&'a str, MetadataProblem> {
        self.text(spellings)?
            .ok_or_else(|| MetadataProblem::Missing {
                key: self.key(spellings[0]),
                expected,
            })
    }

    pub(super) fn object(&self, spellings: &[&str]) -> Result<Option<Fields<'a>>, MetadataProblem> {
        match self.lookup(spellings)? {
            None => Ok(None),
            Some((key, Value::Object(map))) => Ok(Some(Fields { map, at: key })),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "an object",
                found: type_name(other),
            }),
        }
    }

    pub(super) fn name(
        &self,
        spellings: &[&str],
        kind: NameKind,
    ) -> Result<Option<String>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        check_name(kind, text).map_err(|error| MetadataProblem::InvalidName { key, error })?;
        Ok(Some(text.to_owned()))
    }

    /// A string or a list of strings, each a valid `kind` name; duplicates
    /// are dropped, the first occurrence keeps its place.
    pub(super) fn names(
        &self,
        spellings: &[&str],
        kind: NameKind,
    ) -> Result<Vec<String>, MetadataProblem> {
        let checked = |key: String, text: &str| {
            check_name(kind, text)
                .map(|()| text.to_owned())
                .map_err(|error| MetadataProblem::InvalidName { key, error })
        };
        let mut names: Vec<String> = Vec::new();
        match self.lookup(spellings)? {
            None => {}
            Some((key, Value::String(text))) => names.push(checked(key, text)?),
            Some((key, Value::Array(items))) => {
                for (index, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{index}]");
                    let Value::String(text) = item else {
                        return Err(MetadataProblem::WrongType {
                            key: item_key,
                            expected: "a string",
                            found: type_name(item),
                        });
                    };
                    let name = checked(item_key, text)?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            Some((key, other)) => {
                return Err(MetadataProblem::WrongType {
                    key,
                    expected: "a string or a list of strings",
                    found: type_name(other),
                })
            }
        }
        Ok(names)
    }

    pub(super) fn text_list(&self, spellings: &[&str]) -> Result<Vec<String>, MetadataProblem> {
        match self.lookup(spellings)? {
            None => Ok(Vec::new()),
            Some((key, Value::Array(items))) => items
                .iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(MetadataProblem::WrongType {
                        key: format!("{key}[{index}]"),
                        expected: "a string",
                        found: type_name(other),
                    }),
                })
                .collect(),
            Some((key, other)) => Err(MetadataProblem::WrongType {
                key,
                expected: "a list of strings",
                found: type_name(other),
            }),
        }
    }

    /// A path; relative ones are taken from the metadata file's folder.
    pub(super) fn path(
        &self,
        spellings: &[&str],
        folder: &Path,
    ) -> Result<Option<PathBuf>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        if text.chars().any(char::is_control) {
            return Err(MetadataProblem::InvalidValue {
                key,
                expected: "a path without control characters",
                value: shown(text),
            });
        }
        Ok(Some(folder.join(text)))
    }

    pub(super) fn timestamp(
        &self,
        spellings: &[&str],
    ) -> Result<Option<Timestamp>, MetadataProblem> {
        let Some((key, text)) = self.text_entry(spellings)? else {
            return Ok(None);
        };
        Timestamp::parse(text)
            .map(Some)
            .ok_or_else(|| MetadataProblem::InvalidValue {
                key,
                expected: "a time like \"2024-03-05 09:00:00\"",
                value: shown(text),
            })
    }

    pub(super) fn person(&self, name: &str) -> Result<Option<Person>, MetadataProblem> {
        let Some(person) = self.object(&[name])? else {
            return Ok(None);
        };
        Ok(Some(Person {
            email: person.owned_text(&["email"])?,
            institute: person.owned_text(&["institute"])?,
            lastname: person.owned_text(&["lastname"])?,
            user_id: person.owned_text(&["userId"])?,
            username: person.owned_text(&["username"])?,
        }))
    }
}
