//! CEL expressions (crate `cel`, pinned): compiled once when a policy file loads, evaluated
//! against the inbound event (`event`, `ce`) and, in guards, the target Application (`app`).
//! Evaluation is pure; an error (missing field, wrong type) is returned, never a panic.

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
        Ok(Expr {
            source: source.to_string(),
            at,
            program,
        })
    }

    fn eval(&self, vars: Vars<'_>) -> Result<cel::Value, String> {
        let mut ctx = cel::Context::with_env(env().clone());
        let refs = self.program.references();
        for (name, value) in [
            ("event", Some(vars.event)),
            ("ce", Some(vars.ce)),
            ("app", vars.app),
        ] {
            if !refs.has_variable(name) {
                continue;
            }
            if let Some(v) = value {
                ctx.add_variable(name, v).map_err(|e| e.to_string())?;
            }
        }
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
        let vars = Vars {
            event: &event,
            ce: &ce,
            app: Some(&app),
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
