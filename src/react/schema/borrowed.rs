//! A received JSON document read in place, for schema validation: `serde_json_borrow`'s
//! value (strings borrowed from the body, objects as vectors of members) seen through
//! jsonschema's custom-representation traits. Validating a bare CDEvent this way builds no
//! `serde_json::Value` — no map or string per member — for an event no policy reads.
//! It only answers questions about a document; it never parses or allocates a document of
//! its own, except for the cold paths jsonschema asks for (error reports).

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use serde_json_borrow::{KeyStrType, Number, ObjectAsVec, Value as Doc};
use std::borrow::Cow;

/// The representation: nodes are `&serde_json_borrow::Value`.
pub struct Borrowed;

impl Json for Borrowed {
    type Node<'a> = &'a Doc<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = Doc<'static>;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>(
        buffer: &mut Doc<'static>,
        string: &str,
        f: impl FnOnce(<Self as Json>::Node<'_>) -> T,
    ) -> T {
        *buffer = Doc::Str(Cow::Owned(string.to_owned()));
        f(buffer)
    }
}

/// A number of the document.
pub struct Num(Number);

impl JsonNumber for Num {
    fn as_u64(&self) -> Option<u64> {
        self.0.as_u64()
    }

    fn as_i64(&self) -> Option<i64> {
        self.0.as_i64()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.to_string())
    }

    fn to_number(&self) -> Cow<'_, serde_json::Number> {
        let n = match (self.0.as_u64(), self.0.as_i64(), self.0.as_f64()) {
            (Some(u), _, _) => serde_json::Number::from(u),
            (None, Some(i), _) => serde_json::Number::from(i),
            // The parser only yields finite floats; 0 stands in for the impossible rest.
            (None, None, f) => f
                .and_then(serde_json::Number::from_f64)
                .unwrap_or_else(|| serde_json::Number::from(0)),
        };
        Cow::Owned(n)
    }

    /// Integers, and floats without a fraction (`1.0`), as serde_json's own check answers.
    fn is_integer(&self) -> bool {
        self.0.as_u64().is_some()
            || self.0.as_i64().is_some()
            || self.0.as_f64().is_some_and(|f| f.fract() == 0.0)
    }

    fn is_written_as_integer(&self) -> bool {
        self.0.as_u64().is_some() || self.0.as_i64().is_some()
    }
}

impl<'a> Node<'a, Borrowed> for &'a Doc<'a> {
    type Object = &'a ObjectAsVec<'a>;
    type Array = &'a [Doc<'a>];
    type Number = Num;

    fn as_object(&self) -> Option<&'a ObjectAsVec<'a>> {
        match self {
            Doc::Object(members) => Some(members),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<&'a [Doc<'a>]> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            Doc::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<Num> {
        match self {
            Doc::Number(n) => Some(Num(*n)),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self {
            Doc::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Doc::Null)
    }

    fn json_type(&self) -> JsonType {
        match self {
            Doc::Null => JsonType::Null,
            Doc::Bool(_) => JsonType::Boolean,
            Doc::Number(_) => JsonType::Number,
            Doc::Str(_) => JsonType::String,
            Doc::Array(_) => JsonType::Array,
            Doc::Object(_) => JsonType::Object,
        }
    }

    fn to_value(&self) -> Cow<'a, serde_json::Value> {
        Cow::Owned(serde_json::Value::from((*self).clone()))
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(
            std::ptr::from_ref::<Doc<'a>>(*self) as usize
        ))
    }
}

type Member<'a> = (KeyStrType<'a>, Doc<'a>);

/// The members of an object, in document order.
pub struct Members<'a>(std::slice::Iter<'a, Member<'a>>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, &'a Doc<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(name, value)| (&**name, value))
    }
}

impl<'a> Object<'a, Borrowed> for &'a ObjectAsVec<'a> {
    type Node = &'a Doc<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        ObjectAsVec::len(self)
    }

    fn get(&self, key: &Box<str>) -> Option<&'a Doc<'a>> {
        self.as_vec()
            .iter()
            .find(|(name, _)| **name == **key)
            .map(|(_, value)| value)
    }

    fn members(&self) -> Members<'a> {
        Members(self.as_vec().iter())
    }
}

impl<'a> Array<'a, Borrowed> for &'a [Doc<'a>] {
    type Node = &'a Doc<'a>;
    type ElementsIter = std::slice::Iter<'a, Doc<'a>>;

    fn len(&self) -> usize {
        <[Doc<'a>]>::len(self)
    }

    fn elements(&self) -> std::slice::Iter<'a, Doc<'a>> {
        self.iter()
    }
}

/// A view of `value` in this representation, its strings borrowed (for events that
/// arrive already parsed, through a CloudEvents binding).
pub fn view(value: &serde_json::Value) -> Doc<'_> {
    use serde_json::Value as V;
    match value {
        V::Null => Doc::Null,
        V::Bool(b) => Doc::Bool(*b),
        V::Number(n) => Doc::Number(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Number::from(u),
            (None, Some(i), _) => Number::from(i),
            (None, None, f) => Number::from(f.unwrap_or_default()),
        }),
        V::String(s) => Doc::Str(Cow::Borrowed(s)),
        V::Array(items) => Doc::Array(items.iter().map(view).collect()),
        V::Object(members) => Doc::Object(ObjectAsVec::from(
            members
                .iter()
                .map(|(k, v)| (k.as_str(), view(v)))
                .collect::<Vec<_>>(),
        )),
    }
}

/// The first name that appears twice in one object of `doc`, if any. serde_json keeps the
/// last of two equal names and this representation finds the first: a document with one is
/// refused, so that what is validated is what the policies read. Linear in the members: a
/// body of one wide object (a hostile one, within the body limit) costs no more than its size.
pub fn duplicate_name<'a>(doc: &'a Doc<'a>) -> Option<&'a str> {
    match doc {
        Doc::Object(members) => {
            let members = members.as_vec();
            // Small objects, most of an event: comparing with the ones before is cheaper
            // than hashing.
            let twice = if members.len() <= 16 {
                members
                    .iter()
                    .enumerate()
                    .find(|(i, (name, _))| members[..*i].iter().any(|(seen, _)| seen == name))
                    .map(|(_, (name, _))| &**name)
            } else {
                let mut seen = std::collections::HashSet::with_capacity(members.len());
                members
                    .iter()
                    .map(|(name, _)| &**name)
                    .find(|name| !seen.insert(*name))
            };
            twice.or_else(|| members.iter().find_map(|(_, v)| duplicate_name(v)))
        }
        Doc::Array(items) => items.iter().find_map(duplicate_name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jsonschema's own contract for a representation: member lookup, code-point string
    /// lengths, number equality, node identity.
    #[test]
    fn the_representation_keeps_the_contract_jsonschema_relies_on() {
        let text = jsonschema::json::conformance::document().to_string();
        let doc: Doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        jsonschema::json::conformance::assert_conformance::<Borrowed>(&&doc);
        let value = jsonschema::json::conformance::document();
        jsonschema::json::conformance::assert_conformance::<Borrowed>(&&view(&value));
    }

    #[test]
    fn a_name_twice_in_one_object_is_found_at_any_depth_escaped_or_not() {
        let cases = [
            (r#"{"a": 1, "b": {"a": 2}, "c": [{"a": 3}]}"#, None),
            (r#"{"a": 1, "a": 2}"#, Some("a")),
            (r#"{"x": {"k": 1, "j": 2, "k": 3}}"#, Some("k")),
            (r#"[1, {"y": [{"z": 1, "z": 1}]}]"#, Some("z")),
            (r#"{"id": 1, "\u0069d": 2}"#, Some("id")),
            (r#"{"id": 1, "Id": 2}"#, None),
        ];
        // Wide objects (past the small-object scan), with and without a repeat.
        let wide = |extra: &str| {
            let members: Vec<String> = (0..5_000).map(|i| format!("\"m{i}\": {i}")).collect();
            format!("{{{}{extra}}}", members.join(", "))
        };
        let (plain, repeated, late) = (
            wide(""),
            wide(r#", "m17": 0"#),
            wide(r#", "z": {"q": 1, "q": 2}"#),
        );
        let cases = cases.iter().map(|(t, w)| (*t, *w)).chain([
            (plain.as_str(), None),
            (repeated.as_str(), Some("m17")),
            (late.as_str(), Some("q")),
        ]);
        for (text, want) in cases {
            let doc: Doc = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(duplicate_name(&doc), want, "{text}");
        }
    }

    #[test]
    fn integers_are_told_from_fractions_as_serde_json_tells_them() {
        for (text, integer) in [("1", true), ("-3", true), ("1.0", true), ("1.5", false)] {
            let doc: Doc = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            let value: serde_json::Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            let n = (&doc)
                .as_number()
                .unwrap_or_else(|| panic!("{text}: not a number"));
            assert_eq!(n.is_integer(), integer, "{text}");
            assert_eq!(
                *n.to_number(),
                *value.as_number().unwrap_or_else(|| panic!("{text}")),
                "{text}"
            );
        }
    }
}
