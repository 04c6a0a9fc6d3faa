//! Building span attributes: typed setters, content attributes bounded per
//! policy, and the sponsor/correlation set every span carries.

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use serde_json::Value;

use crate::record::{Correlation, Sponsor, SponsorAssurance};

use super::content;
use super::semconv::*;
use super::spans::Policy;

#[derive(Default)]
pub struct Attrs(pub Vec<KeyValue>);

impl Attrs {
    pub fn put(&mut self, key: &str, value: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }
    pub fn str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.put(key, any_value::Value::StringValue(value.to_owned()));
        }
    }
    pub fn int(&mut self, key: &str, value: i64) {
        self.put(key, any_value::Value::IntValue(value));
    }
    pub fn double(&mut self, key: &str, value: f64) {
        self.put(key, any_value::Value::DoubleValue(value));
    }
    pub fn bool(&mut self, key: &str, value: bool) {
        self.put(key, any_value::Value::BoolValue(value));
    }
    pub fn strs(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            let values = values
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue(v.clone())),
                })
                .collect();
            self.put(key, any_value::Value::ArrayValue(ArrayValue { values }));
        }
    }
    /// Content: scrubbed, bounded, with the digest of the whole when cut.
    pub fn content(&mut self, key: &str, value: &str, policy: &Policy) {
        let b = content::bounded(value, policy.max_attribute_size, policy.redact);
        self.str(key, &b.value);
        if let Some((digest, size)) = b.truncated {
            self.str(
                &format!("{SIDETRACE_TRUNCATED_PREFIX}{key}"),
                &format!("{digest} {size}"),
            );
        }
    }
    pub fn json(&mut self, key: &str, value: &Value, policy: &Policy) {
        self.content(key, &value.to_string(), policy);
    }
}

/// The sponsor and correlation attributes every span carries.
pub fn common(
    attrs: &mut Attrs,
    execution_id: &str,
    sponsor: Option<&Sponsor>,
    correlation: Option<&Correlation>,
) {
    attrs.str(SIDETRACE_EXECUTION_ID, execution_id);
    if let Some(s) = sponsor {
        attrs.str(ENDUSER_ID, &s.id);
        let assurance = SponsorAssurance::try_from(s.assurance)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("SPONSOR_ASSURANCE_")
            .to_ascii_lowercase();
        attrs.str(SIDETRACE_SPONSOR_ASSURANCE, &assurance);
    }
    if let Some(c) = correlation {
        attrs.str(VCS_CHANGE_ID, &c.change_id);
        attrs.str(VCS_REPOSITORY_URL_FULL, &c.repository_url);
        attrs.str(VCS_REF_HEAD_NAME, &c.ref_name);
        attrs.str(VCS_REF_HEAD_REVISION, &c.revision);
        attrs.str(VCS_PROVIDER_NAME, &c.vcs_provider);
        attrs.str(CICD_PIPELINE_RUN_ID, &c.pipeline_run_id);
        attrs.str(CICD_PIPELINE_RUN_URL_FULL, &c.pipeline_run_url);
        attrs.str(CICD_PIPELINE_TASK_RUN_ID, &c.job_id);
    }
}
