//! CEL expressions (crate `cel`, pinned): compiled once when a policy file loads, evaluated
//! against the inbound event (`event`, `ce`) and, in guards, the target Application (`app`).
//! Evaluation is pure; an error (missing field, wrong type) is returned, never a panic.

use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use serde_json::Value;
use std::sync::{Arc, OnceLock};

fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib()))
}

/// One compiled expression, with where it was written (`file:line:column`).
pub struct Expr {
    pub source: String,
    pub at: String,
    program: cel::Program,
    /// Which of `event`, `ce`, `app` the expression reads (found once, at compile time).
    uses: [bool; 3],
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// The variables an expression can see.
#[derive(Clone, Copy)]
pub struct Vars<'a> {
    /// The CDEvent (or, for other CloudEvents, their data).
    pub event: &'a Value,
    /// The CloudEvent attributes and extensions.
    pub ce: &'a Value,
    /// The target Application, in guards.
    pub app: Option<&'a Value>,
    /// The variables converted to CEL values, once for all the expressions evaluated
    /// against them (the conversion costs more than most expressions).
    pub cache: &'a Converted,
}

/// CEL values of `event`, `ce` and `app`, converted on first use and then lent to every
/// evaluation (through a variable resolver, so they are not copied again).
#[derive(Default)]
pub struct Converted([std::cell::OnceCell<Result<Box<dyn Val>, String>>; 3]);

/// Lends the converted variables to one evaluation.
struct Lend<'a>([Option<&'a dyn Val>; 3]);

impl VariableResolver for Lend<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let slot = match variable {
            "event" => 0,
            "ce" => 1,
            "app" => 2,
            _ => return None,
        };
        self.0[slot].map(CowVal::Borrowed)
    }
}

impl Expr {
    /// Compile `source`; the error is the parser's message.
    pub fn compile(source: &str, at: String) -> Result<Expr, String> {
        let program = env().compile(source).map_err(|e| {
            let msg = e.to_string();
            msg.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })?;
        let refs = program.references();
        let uses = ["event", "ce", "app"].map(|v| refs.has_variable(v));
        Ok(Expr {
            source: source.to_string(),
            at,
            program,
            uses,
        })
    }

    fn eval(&self, vars: Vars<'_>) -> Result<cel::Value, String> {
        let sources = [Some(vars.event), Some(vars.ce), vars.app];
        let mut lent: [Option<&dyn Val>; 3] = [None, None, None];
        for (slot, value) in sources.into_iter().enumerate() {
            let Some(v) = value else { continue };
            if !self.uses[slot] {
                continue;
            }
            let converted = vars.cache.0[slot]
                .get_or_init(|| Box::<dyn Val>::try_from(to_cel(v)).map_err(|e| e.to_string()));
            match converted {
                Ok(c) => lent[slot] = Some(c.as_ref()),
                Err(e) => return Err(e.clone()),
            }
        }
        let lend = Lend(lent);
        let mut ctx = cel::Context::with_env(env().clone());
        ctx.set_variable_resolver(&lend);
        self.program.execute(&ctx).map_err(|e| e.to_string())
    }

    /// Evaluate to a boolean.
    pub fn eval_bool(&self, vars: Vars<'_>) -> Result<bool, String> {
        match self.eval(vars)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(format!("expected a boolean, got {}", type_name(&other))),
        }
    }

    /// Evaluate to a string (numbers are written out; other types are an error).
    pub fn eval_string(&self, vars: Vars<'_>) -> Result<String, String> {
        match self.eval(vars)? {
            cel::Value::String(s) => Ok(s.to_string()),
            cel::Value::Int(i) => Ok(i.to_string()),
            cel::Value::UInt(u) => Ok(u.to_string()),
            other => Err(format!("expected a string, got {}", type_name(&other))),
        }
    }

    /// Evaluate to an integer (a numeric string is accepted).
    pub fn eval_int(&self, vars: Vars<'_>) -> Result<i64, String> {
        match self.eval(vars)? {
            cel::Value::Int(i) => Ok(i),
            cel::Value::UInt(u) => i64::try_from(u).map_err(|e| e.to_string()),
            cel::Value::String(s) => s
                .parse()
                .map_err(|_| format!("expected an integer, got the string {s:?}")),
            other => Err(format!("expected an integer, got {}", type_name(&other))),
        }
    }
}

/// JSON to CEL directly (faster than through serde): integers stay integers, other numbers
/// become floats, as CEL reads JSON.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(std::sync::Arc::new(s.clone())),
        Value::Array(items) => {
            cel::Value::List(std::sync::Arc::new(items.iter().map(to_cel).collect()))
        }
        Value::Object(map) => {
            let m: std::collections::HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(m)
        }
    }
}

fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::Bool(_) => "a boolean",
        cel::Value::String(_) => "a string",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a float",
        cel::Value::Null => "null",
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        _ => "another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_against_event_ce_and_app() {
        let event = json!({"subject": {"content": {"environment": {"id": "production"}, "n": 3}}});
        let ce = json!({"source": "/monitoring/prom", "type": "x"});
        let app = json!({"status": {"health": {"status": "Degraded"}}});
        let cache = Converted::default();
        let vars = Vars {
            event: &event,
            ce: &ce,
            app: Some(&app),
            cache: &cache,
        };
        let e = |s: &str| Expr::compile(s, "t".into()).unwrap_or_else(|m| panic!("{s}: {m}"));
        assert_eq!(
            e("event.subject.content.environment.id == 'production'").eval_bool(vars),
            Ok(true)
        );
        assert_eq!(
            e("ce.source.startsWith('/monitoring/')").eval_bool(vars),
            Ok(true)
        );
        assert_eq!(
            e("app.status.health.status != 'Healthy'").eval_bool(vars),
            Ok(true)
        );
        assert_eq!(e("event.subject.content.n").eval_int(vars), Ok(3));
        assert_eq!(
            e("'web-' + string(event.subject.content.n)").eval_string(vars),
            Ok("web-3".into())
        );
        assert!(
            e("event.subject.content.missing == 'x'")
                .eval_bool(vars)
                .is_err()
        );
        assert!(e("event.subject.content.n").eval_bool(vars).is_err());
        assert!(Expr::compile("event.(", "t".into()).is_err());
    }
}
