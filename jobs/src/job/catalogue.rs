//! What the doors that enqueue by name (the CLI, later the HTTP API) need to know about every
//! kind without running it: its name, its queue, its default priority, whether given arguments decode into its
//! argument type — with the path of the field that does not — and the JSON schema of that
//! type, as the enqueue API publishes it.

use super::{JobArgs, Policy, Priority};

/// Why arguments do not decode into a kind's argument type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsError {
    /// What is wrong, in serde's words, without the position.
    pub message: String,
    /// The field, as `args.<path>` (`args` itself when the whole value is wrong).
    pub field: String,
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One kind as the doors see it.
#[derive(Clone, Copy)]
pub struct KindInfo {
    /// `family.name`.
    pub kind: &'static str,
    /// The queue it goes to unless told otherwise.
    pub queue: &'static str,
    /// The priority its jobs get unless the caller gives one ([`JobArgs::PRIORITY`]).
    pub priority: Priority,
    /// Its policy ([`JobArgs::POLICY`]): attempts, timeout, backoff, the provider circuit.
    pub policy: Policy,
    check: fn(&str) -> Result<(), ArgsError>,
    schema: fn() -> serde_json::Value,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (queue {}, priority {})",
            self.kind,
            self.queue,
            self.priority.as_str()
        )
    }
}

impl KindInfo {
    /// The entry of kind `A`.
    pub fn of<A: JobArgs + schemars::JsonSchema>() -> Self {
        Self {
            kind: A::KIND,
            queue: A::QUEUE,
            priority: A::PRIORITY,
            policy: A::POLICY,
            check: check::<A>,
            schema: schema::<A>,
        }
    }

    /// Whether `json` decodes into the kind's argument type.
    pub fn check(&self, json: &str) -> Result<(), ArgsError> {
        (self.check)(json)
    }

    /// The JSON schema (draft 2020-12) of the kind's argument type, with the types it
    /// names under `$defs`.
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }
}

fn schema<A: schemars::JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(A).into()
}

fn check<A: JobArgs>(json: &str) -> Result<(), ArgsError> {
    let mut de = serde_json::Deserializer::from_str(json);
    match serde_path_to_error::deserialize::<_, A>(&mut de) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.to_string();
            // serde appends " at line L column C": the field says where.
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            let mut field = if path == "." {
                "args".to_owned()
            } else {
                format!("args.{path}")
            };
            // A missing field is reported at its parent: name the field itself.
            if let Some(name) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = format!("{field}.{name}");
            }
            Err(ArgsError { message, field })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Inner {
        n: u32,
    }

    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        call_id: String,
        inner: Inner,
    }

    impl JobArgs for Probe {
        const KIND: &'static str = "test.probe";
        const QUEUE: &'static str = "probes";
    }

    #[test]
    fn errors_name_the_field() {
        let k = KindInfo::of::<Probe>();
        assert_eq!(
            (k.kind, k.queue, k.priority),
            ("test.probe", "probes", Priority::Normal)
        );
        assert!(k.check(r#"{"call_id":"c","inner":{"n":1}}"#).is_ok());
        let missing = k.check(r#"{"inner":{"n":1}}"#).unwrap_err();
        assert_eq!(missing.field, "args.call_id");
        assert_eq!(missing.message, "missing field `call_id`");
        let wrong = k.check(r#"{"call_id":"c","inner":{"n":"x"}}"#).unwrap_err();
        assert_eq!(wrong.field, "args.inner.n", "{wrong}");
        let whole = k.check(r#""just text""#).unwrap_err();
        assert_eq!(whole.field, "args");
    }

    #[test]
    fn schema_describes_the_argument_type() {
        let schema = KindInfo::of::<Probe>().schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["additionalProperties"], false,
            "deny_unknown_fields: {schema}"
        );
        assert_eq!(schema["required"], serde_json::json!(["call_id", "inner"]));
        assert_eq!(schema["properties"]["inner"]["$ref"], "#/$defs/Inner");
        assert_eq!(
            schema["$defs"]["Inner"]["properties"]["n"]["type"],
            "integer"
        );
    }
}
