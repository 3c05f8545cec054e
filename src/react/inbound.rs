//! Inbound CloudEvents: decoding an HTTP request in any CloudEvents HTTP binding mode
//! (binary, structured, batch) or a bare CDEvent body into [`Inbound`] events, and checking
//! each one (CDEvents against their spec schema, the CloudEvent attributes against the
//! CDEvent's context). Pure: no I/O, no clock; the HTTP handler calls it.

use super::policy::PolicySet;
use super::schema::{SchemaError, Schemas};
use axum::body::Bytes;
use axum::http::HeaderMap;
use cloudevents::event::{AttributesReader, Data};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use serde_json_borrow::Value as Doc;
use std::borrow::Cow;
use std::sync::OnceLock;

/// One received event. Its inbox row holds [`Inbound::stored`]; rows written before that
/// form hold the event serialised whole, and both read back with [`Inbound::from_stored`].
#[derive(Debug, Clone)]
pub struct Inbound {
    pub id: String,
    pub source: String,
    pub ty: String,
    /// Every CloudEvent attribute and extension (strings), for CEL as `ce`; `None` for a
    /// bare CDEvent, whose attributes follow from its context ([`Inbound::attributes`]).
    attributes: Option<Map<String, Value>>,
    /// The CDEvent, or the CloudEvent's data for other events ([`Inbound::data`]). A bare
    /// CDEvent's is parsed from `raw_data` the first time it is read: one that no policy
    /// wants is validated and stored without ever being built.
    data: OnceLock<Value>,
    /// The request body of a bare CDEvent, which is exactly `data` as JSON text: stored as
    /// it came instead of serialised again. Not part of the event (equality ignores it).
    raw_data: Option<Bytes>,
    /// A bare CDEvent's [`Inbound::check`] of its schema and context, reached while its body
    /// was parsed. Not part of the event (equality ignores it).
    verdict: Option<Result<(), InboundError>>,
}

/// The type prefix of the spec's own CDEvents.
const CDEVENT_PREFIX: &str = "dev.cdevents.";

impl PartialEq for Inbound {
    fn eq(&self, other: &Self) -> bool {
        (&self.id, &self.source, &self.ty, self.data())
            == (&other.id, &other.source, &other.ty, other.data())
            && self.attributes() == other.attributes()
    }
}

/// An inbox payload as read back: both the current form (`data`, and `attributes` unless
/// they follow from a bare CDEvent's context) and the older whole [`Inbound`], whose extra
/// fields repeat the row's columns.
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    data: Value,
}

/// Why a request or one of its events was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadRequest(String),
}

fn bad(msg: impl Into<String>) -> InboundError {
    InboundError::BadRequest(msg.into())
}

/// The request's media type, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

/// Decode a request body into events; `Err` says what is wrong (415 or 400).
pub fn decode(
    headers: &HeaderMap,
    body: &Bytes,
    schemas: &Schemas,
) -> Result<Vec<Inbound>, InboundError> {
    let media = media_type(headers);
    let binary = headers.contains_key("ce-specversion");
    match media.as_deref() {
        Some("application/cloudevents-batch+json") => {
            let items: Vec<Value> = serde_json::from_slice(body)
                .map_err(|e| bad(format!("batch body is not a JSON array: {e}")))?;
            if items.is_empty() {
                return Err(bad("batch is empty"));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let ev: cloudevents::Event = serde_json::from_value(v)
                        .map_err(|e| bad(format!("batch[{i}]: invalid CloudEvent: {e}")))?;
                    from_event(ev).map_err(|e| bad(format!("batch[{i}]: {e}")))
                })
                .collect()
        }
        Some("application/cloudevents+json") => {
            let ev = cloudevents::binding::http::to_event(headers, body.to_vec())
                .map_err(|e| bad(format!("invalid structured CloudEvent: {e}")))?;
            Ok(vec![from_event(ev).map_err(|e| bad(e.to_string()))?])
        }
        _ if binary => {
            let ev = cloudevents::binding::http::to_event(headers, body.to_vec())
                .map_err(|e| bad(format!("invalid binary-mode CloudEvent: {e}")))?;
            Ok(vec![from_event(ev).map_err(|e| bad(e.to_string()))?])
        }
        Some("application/json") => Ok(vec![bare_cdevent(body, schemas)?]),
        Some(other) => Err(InboundError::UnsupportedMediaType(format!(
            "content type {other:?} is not accepted; send a CloudEvent (binary mode with ce-* headers, application/cloudevents+json, application/cloudevents-batch+json) or a CDEvent as application/json"
        ))),
        None => Err(InboundError::UnsupportedMediaType(
            "no Content-Type; send a CloudEvent or a CDEvent as application/json".into(),
        )),
    }
}

fn from_event(ev: cloudevents::Event) -> Result<Inbound, InboundError> {
    let mut attributes = Map::new();
    for (name, value) in ev.iter() {
        attributes.insert(name.to_string(), Value::String(value.to_string()));
    }
    let data = match ev.data() {
        None => Value::Null,
        Some(Data::Json(v)) => v.clone(),
        Some(Data::String(s)) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(Data::Binary(b)) => match serde_json::from_slice(b) {
            Ok(v) => v,
            Err(_) => Value::String(String::from_utf8_lossy(b).into_owned()),
        },
    };
    if ev.id().is_empty() {
        return Err(bad("CloudEvent attribute id is empty"));
    }
    Ok(Inbound {
        id: ev.id().to_string(),
        source: ev.source().to_string(),
        ty: ev.ty().to_string(),
        attributes: Some(attributes),
        data: OnceLock::from(data),
        raw_data: None,
        verdict: None,
    })
}

/// A CDEvent sent as plain JSON: the CloudEvent is built from its context.
fn bare_cdevent(body: &Bytes, schemas: &Schemas) -> Result<Inbound, InboundError> {
    let doc = parse_in_place(body)?;
    let ctx = Some(doc.get("context"))
        .filter(|c| c.is_object())
        .ok_or_else(|| bad("a plain JSON body must be a CDEvent with a context object; for other events use a CloudEvents binding"))?;
    let field = |k: &str| -> Result<String, InboundError> {
        ctx.get(k)
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| bad(format!("context.{k}: missing or not a non-empty string")))
    };
    let (id, source, ty) = (field("id")?, field("source")?, field("type")?);
    // Judged now, while the body is parsed; reported by `check`, after the client's scope.
    let verdict = ty
        .starts_with(CDEVENT_PREFIX)
        .then(|| check_cdevent(&doc, &id, &source, &ty, schemas));
    Ok(Inbound {
        id,
        source,
        ty,
        attributes: None,
        data: OnceLock::new(),
        raw_data: Some(body.clone()),
        verdict,
    })
}

/// A bare CDEvent body read in place (its strings borrowed, no `serde_json::Value` built).
/// A name twice in one object is refused: serde_json, which reads the event for the
/// policies, keeps the last, and validation would see the first.
fn parse_in_place(body: &[u8]) -> Result<Doc<'_>, InboundError> {
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    if let Some(name) = super::schema::borrowed::duplicate_name(&doc) {
        return Err(bad(format!(
            "body has the name {name:?} twice in one object; names must be unique"
        )));
    }
    Ok(doc)
}

/// Append valid JSON text to `out` without the whitespace between its tokens (inside strings
/// it stays). A filter over the bytes, not a parser: the text was parsed already. A string's
/// contents, most of an event, are copied in runs up to its next quote or backslash.
pub(super) fn push_without_whitespace(json: &[u8], out: &mut Vec<u8>) {
    let mut rest = json;
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
        if b != b'"' {
            continue;
        }
        // Inside a string: copy up to its closing quote, escapes included.
        loop {
            let Some(i) = memchr::memchr2(b'"', b'\\', rest) else {
                // Not valid JSON after all: keep the rest as it is.
                out.extend_from_slice(rest);
                return;
            };
            let escape = rest[i] == b'\\';
            let end = if escape {
                (i + 2).min(rest.len())
            } else {
                i + 1
            };
            out.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
            if !escape {
                break;
            }
        }
    }
}

/// The CloudEvent attributes of a bare CDEvent, from its context.
fn bare_attributes(id: &str, source: &str, ty: &str, ctx: &Value) -> Map<String, Value> {
    let mut attributes = Map::new();
    attributes.insert("specversion".into(), json!("1.0"));
    attributes.insert("id".into(), json!(id));
    attributes.insert("source".into(), json!(source));
    attributes.insert("type".into(), json!(ty));
    attributes.insert("datacontenttype".into(), json!("application/json"));
    if let Some(t) = ctx.get("timestamp").and_then(Value::as_str) {
        attributes.insert("time".into(), json!(t));
    }
    attributes
}

impl Inbound {
    /// The inbox payload: the data, and the CloudEvent attributes unless they follow from a
    /// bare CDEvent's context. The id, source and type are the row's own columns. A bare
    /// CDEvent's data is its request body as it came (valid JSON, since it was parsed).
    pub fn stored(&self) -> String {
        // One pass over the body into the payload's own buffer.
        let raw = self.raw_data.as_ref().and_then(|body| {
            let mut out = Vec::with_capacity(body.len() + 10);
            out.extend_from_slice(b"{\"data\":");
            push_without_whitespace(body, &mut out);
            out.push(b'}');
            String::from_utf8(out).ok()
        });
        raw.unwrap_or_else(|| match &self.attributes {
            Some(attributes) => json!({"attributes": attributes, "data": self.data()}).to_string(),
            None => json!({"data": self.data()}).to_string(),
        })
    }

    /// The CloudEvent attributes and extensions: as received, or for a bare CDEvent those
    /// that follow from its context.
    pub fn attributes(&self) -> Cow<'_, Map<String, Value>> {
        match &self.attributes {
            Some(a) => Cow::Borrowed(a),
            None => Cow::Owned(bare_attributes(
                &self.id,
                &self.source,
                &self.ty,
                &self.data()["context"],
            )),
        }
    }

    /// The event of an inbox row: its columns and its payload (either form, see [`Stored`]).
    pub fn from_stored(
        id: &str,
        source: &str,
        ty: &str,
        payload: &str,
    ) -> Result<Inbound, serde_json::Error> {
        let stored: Stored = serde_json::from_str(payload)?;
        Ok(Inbound {
            id: id.to_string(),
            source: source.to_string(),
            ty: ty.to_string(),
            attributes: stored.attributes,
            data: OnceLock::from(stored.data),
            raw_data: None,
            verdict: None,
        })
    }

    /// The CDEvent, or the CloudEvent's data for other events; a bare CDEvent's is parsed
    /// from its body on the first call.
    pub fn data(&self) -> &Value {
        self.data.get_or_init(|| {
            // The body parsed already (`parse_in_place`), so this cannot fail.
            self.raw_data
                .as_ref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or_default()
        })
    }

    /// Is this a CDEvent of the spec (`dev.cdevents.*`)?
    pub fn is_cdevent(&self) -> bool {
        self.ty.starts_with(CDEVENT_PREFIX)
    }

    /// The CloudEvent attributes as a JSON object (CEL's `ce`).
    pub fn ce(&self) -> Value {
        Value::Object(self.attributes().into_owned())
    }

    /// The chain this event belongs to: the CDEvent's `context.chainId`, or the
    /// CloudEvent extension `chainid`.
    pub fn chain_id(&self) -> Option<&str> {
        self.data()["context"]["chainId"]
            .as_str()
            .or_else(|| {
                self.attributes
                    .as_ref()
                    .and_then(|a| a.get("chainid"))
                    .and_then(Value::as_str)
            })
            .filter(|s| !s.is_empty())
    }

    /// Check a decoded event: a CDEvent must validate against its schema and agree with
    /// its CloudEvent attributes; any other event is accepted only if one of `policies`
    /// asks for its type.
    pub fn check(&self, schemas: &Schemas, policies: &PolicySet) -> Result<(), InboundError> {
        if self.is_cdevent() {
            match &self.verdict {
                Some(verdict) => verdict.clone(),
                None => check_cdevent(
                    &super::schema::borrowed::view(self.data()),
                    &self.id,
                    &self.source,
                    &self.ty,
                    schemas,
                ),
            }
        } else if policies.wants_type(&self.ty) {
            Ok(())
        } else {
            Err(bad(format!(
                "event {:?}: type {:?} is not a CDEvents type and no policy asks for it",
                self.id, self.ty
            )))
        }
    }
}

/// A CDEvent must validate against its schema and agree with its CloudEvent attributes.
fn check_cdevent(
    doc: &Doc<'_>,
    id: &str,
    source: &str,
    ty: &str,
    schemas: &Schemas,
) -> Result<(), InboundError> {
    if !doc.is_object() {
        return Err(bad(format!(
            "event {id:?}: type {ty} is a CDEvent type, but the data is not a CDEvent JSON object"
        )));
    }
    schemas.validate_doc(doc).map_err(|e| match e {
        SchemaError::Invalid(m) => bad(format!("event {id:?}: CDEvent is invalid: {m}")),
        other => bad(format!("event {id:?}: {other}")),
    })?;
    let ctx = doc.get("context");
    for (attr, mine, theirs) in [
        ("type", ty, ctx.get("type").as_str()),
        ("id", id, ctx.get("id").as_str()),
        ("source", source, ctx.get("source").as_str()),
    ] {
        if Some(mine) != theirs {
            return Err(bad(format!(
                "event {id:?}: CloudEvent {attr} {mine:?} differs from the CDEvent's context.{attr} {:?}",
                theirs.unwrap_or_default()
            )));
        }
    }
    Ok(())
}
