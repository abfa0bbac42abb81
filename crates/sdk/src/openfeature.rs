//! An OpenFeature provider backed by a [`Client`]: in-process evaluation,
//! with the client's status as the provider status and its changes as
//! provider events.
//!
//! The `open-feature` crate (0.3) has no event API of its own, so the
//! provider exposes the spec's events itself through
//! [`SextantProvider::events`]: `Ready`, `Stale`, `Error` and
//! `ConfigurationChanged` with the changed flag keys.
//!
//! ```no_run
//! use open_feature::{EvaluationContext, OpenFeature};
//! use sextant_sdk::{Client, openfeature::SextantProvider};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("https://flags.example.com", "sxs_…").build().await?;
//! let provider = SextantProvider::new(client);
//! let mut events = provider.events();
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         tracing::info!(?event, "provider event");
//!     }
//! });
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(provider).await;
//! let flags = api.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42");
//! let on = flags.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! # let _ = on; Ok(()) }
//! ```

use std::collections::HashMap;

use open_feature::provider::{FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadata, FlagMetadataValue, StructValue,
};
use serde_json::Value;
use sextant_core::{Context, ErrorCode, FlagKind, Reason};
use tokio::sync::broadcast;

use crate::{Client, ClientEvent, Status};

/// The OpenFeature provider. Evaluation is local and never waits.
#[derive(Debug, Clone)]
pub struct SextantProvider {
    client: Client,
    metadata: ProviderMetadata,
}

/// An OpenFeature provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// In sync with the server.
    Ready,
    /// Serving flags that may be out of date (server unreachable; cache
    /// or bootstrap data).
    Stale,
    /// The server refused the SDK token, or nothing could be loaded.
    Error {
        /// What is wrong.
        message: String,
    },
    /// Flags may evaluate differently now.
    ConfigurationChanged {
        /// Keys of the flags that changed (sorted).
        flags_changed: Vec<String>,
    },
}

/// A receiver of [`ProviderEvent`]s; see [`SextantProvider::events`].
#[derive(Debug)]
pub struct ProviderEvents {
    first: Option<ProviderEvent>,
    rx: broadcast::Receiver<ClientEvent>,
}

impl ProviderEvents {
    /// The next event; `None` once the client is gone. A receiver that
    /// fell far behind skips to the newest events.
    pub async fn recv(&mut self) -> Option<ProviderEvent> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            match self.rx.recv().await {
                Ok(ClientEvent::Status(status)) => {
                    if let Some(event) = status_event(status) {
                        return Some(event);
                    }
                }
                Ok(ClientEvent::FlagsChanged(keys)) => {
                    return Some(ProviderEvent::ConfigurationChanged {
                        flags_changed: keys.to_vec(),
                    });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn status_event(status: Status) -> Option<ProviderEvent> {
    match status {
        Status::Ready => Some(ProviderEvent::Ready),
        Status::Stale => Some(ProviderEvent::Stale),
        Status::Error => Some(ProviderEvent::Error {
            message: "the server refused the SDK token".into(),
        }),
        Status::NotReady => None,
    }
}

impl SextantProvider {
    /// A provider evaluating with `client`.
    pub fn new(client: Client) -> Self {
        SextantProvider {
            client,
            metadata: ProviderMetadata::new("sextant"),
        }
    }

    /// The underlying client (for `track`, `flush`, `on_change`, …).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Provider events. The first is the current state (`Ready`, `Stale`
    /// or `Error`), as the OpenFeature spec asks of handlers added late.
    pub fn events(&self) -> ProviderEvents {
        let rx = self.client.subscribe();
        ProviderEvents {
            first: status_event(self.client.status()),
            rx,
        }
    }

    fn resolve<T>(
        &self,
        key: &str,
        evaluation_context: &EvaluationContext,
        kind: FlagKind,
        convert: impl FnOnce(&Value) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        let ctx = context(evaluation_context);
        let resolved = self.client.with_resolution(key, Some(kind), &ctx, |r| {
            let Some(r) = r else {
                return Err(error(EvaluationErrorCode::ProviderNotReady, "no flags are loaded yet"));
            };
            if let Some(code) = r.error {
                return Err(error(error_code(code), "flag evaluation failed"));
            }
            let Some(value) = r.value else {
                // The flag serves no variation (off without an off
                // variation, or no default serve): the caller's default
                // applies, which the 0.3 provider API cannot return.
                return Err(error(
                    EvaluationErrorCode::General(format!("{}: the flag serves no variation", r.reason.as_str())),
                    "the caller's default applies",
                ));
            };
            let value =
                convert(value).ok_or_else(|| error(EvaluationErrorCode::TypeMismatch, "the value has another type"))?;
            Ok(ResolutionDetails {
                value,
                variant: r.variation.map(str::to_owned),
                reason: Some(reason(r.reason)),
                flag_metadata: None,
            })
        });
        resolved.map(|mut details| {
            details.flag_metadata = self.client.metadata(key).and_then(|m| flag_metadata(&m));
            details
        })
    }
}

fn error(code: EvaluationErrorCode, message: &str) -> EvaluationError {
    EvaluationError {
        code,
        message: Some(message.to_owned()),
    }
}

fn error_code(code: ErrorCode) -> EvaluationErrorCode {
    match code {
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::General => EvaluationErrorCode::General("GENERAL".into()),
    }
}

fn reason(reason: Reason) -> EvaluationReason {
    match reason {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Default => EvaluationReason::Default,
        Reason::Error => EvaluationReason::Error,
        other => EvaluationReason::Other(other.as_str().to_owned()),
    }
}

/// The OpenFeature context as a Sextant context, evaluated at the current time.
fn context(ec: &EvaluationContext) -> Context {
    let mut ctx = Context {
        targeting_key: ec.targeting_key.clone(),
        ..Context::default()
    };
    for (name, value) in &ec.custom_fields {
        if let Some(value) = field_json(value) {
            ctx.attributes.insert(name.clone(), value);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    ctx.at(now)
}

fn field_json(value: &EvaluationContextFieldValue) -> Option<Value> {
    Some(match value {
        EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
        EvaluationContextFieldValue::Int(i) => Value::from(*i),
        EvaluationContextFieldValue::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
        EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
        // Date conditions accept epoch seconds.
        EvaluationContextFieldValue::DateTime(t) => Value::from(t.unix_timestamp()),
        // Structured values: JSON given as `serde_json::Value` or `Map`.
        EvaluationContextFieldValue::Struct(any) => {
            if let Some(v) = any.downcast_ref::<Value>() {
                v.clone()
            } else {
                Value::Object(any.downcast_ref::<serde_json::Map<String, Value>>()?.clone())
            }
        }
    })
}

fn of_value(value: &Value) -> Option<open_feature::Value> {
    use open_feature::Value as V;
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => V::Float(n.as_f64()?),
        },
        Value::String(s) => V::String(s.clone()),
        Value::Array(items) => V::Array(items.iter().filter_map(of_value).collect()),
        Value::Object(map) => V::Struct(struct_value(map)),
    })
}

fn struct_value(map: &serde_json::Map<String, Value>) -> StructValue {
    StructValue {
        fields: map
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), of_value(v)?)))
            .collect::<HashMap<_, _>>(),
    }
}

fn flag_metadata(map: &std::collections::BTreeMap<String, Value>) -> Option<FlagMetadata> {
    let mut metadata = FlagMetadata::default();
    for (key, value) in map {
        let value = match value {
            Value::Bool(b) => FlagMetadataValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => FlagMetadataValue::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => FlagMetadataValue::String(s.clone()),
            _ => continue,
        };
        metadata.add_value(key.clone(), value);
    }
    (!metadata.values.is_empty()).then_some(metadata)
}

#[open_feature::async_trait]
impl FeatureProvider for SextantProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        match self.client.status() {
            Status::Ready => ProviderStatus::Ready,
            Status::Stale => ProviderStatus::STALE,
            Status::Error => ProviderStatus::Error,
            Status::NotReady => ProviderStatus::NotReady,
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(flag_key, evaluation_context, FlagKind::Boolean, Value::as_bool)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(flag_key, evaluation_context, FlagKind::Number, Value::as_i64)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(flag_key, evaluation_context, FlagKind::Number, Value::as_f64)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(flag_key, evaluation_context, FlagKind::String, |v| {
            v.as_str().map(str::to_owned)
        })
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        evaluation_context: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(flag_key, evaluation_context, FlagKind::Json, |v| {
            v.as_object().map(struct_value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn context_fields_become_attributes() {
        let ec = EvaluationContext::default()
            .with_targeting_key("u1")
            .with_custom_field("plan", "pro")
            .with_custom_field("seats", 12)
            .with_custom_field("beta", true)
            .with_custom_field("org", EvaluationContextFieldValue::new_struct(json!({"tier": "gold"})));
        let ctx = context(&ec);
        assert_eq!(ctx.targeting_key.as_deref(), Some("u1"));
        assert_eq!(ctx.get("plan"), Some(&json!("pro")));
        assert_eq!(ctx.get("seats"), Some(&json!(12)));
        assert_eq!(ctx.get("beta"), Some(&json!(true)));
        assert_eq!(ctx.get("org.tier"), Some(&json!("gold")));
        assert!(ctx.now.is_some());
    }

    #[test]
    fn json_objects_become_struct_values_without_nulls() {
        let s = struct_value(
            json!({"a": 1, "b": 1.5, "c": [true, null], "d": null, "e": {"f": "g"}})
                .as_object()
                .unwrap(),
        );
        assert_eq!(s.fields.get("a"), Some(&open_feature::Value::Int(1)));
        assert_eq!(s.fields.get("b"), Some(&open_feature::Value::Float(1.5)));
        assert_eq!(
            s.fields.get("c"),
            Some(&open_feature::Value::Array(vec![open_feature::Value::Bool(true)]))
        );
        assert!(!s.fields.contains_key("d"));
        assert!(matches!(s.fields.get("e"), Some(open_feature::Value::Struct(_))));
    }
}
