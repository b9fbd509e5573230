//! One request as kiln describes it before the client signs and sends it ([`Call`]: operation,
//! path, query, body, the mutation headers of [`MutationOptions`]), and the answer with the headers
//! OCI callers need ([`Response`]); how query values and retry tokens are spelled.

use rand::Rng;
use reqwest::Method;

/// Compute API version path.
pub const API_VERSION: &str = "/20160918";

/// A response with the headers OCI callers need.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<T> {
    pub body: T,
    pub status: u16,
    pub etag: Option<String>,
    pub opc_request_id: Option<String>,
    pub opc_work_request_id: Option<String>,
    pub opc_next_page: Option<String>,
}

impl<T> Response<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Response<U> {
        Response {
            body: f(self.body),
            status: self.status,
            etag: self.etag,
            opc_request_id: self.opc_request_id,
            opc_work_request_id: self.opc_work_request_id,
            opc_next_page: self.opc_next_page,
        }
    }
}

/// Headers for mutating calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MutationOptions {
    /// Sent as `If-Match`: the call fails with 412 if the resource changed since this etag.
    pub if_match: Option<String>,
    /// Sent as `opc-retry-token` (one is generated for POST/PUT when absent).
    pub retry_token: Option<String>,
}

impl MutationOptions {
    pub fn if_match(etag: Option<&str>) -> Self {
        MutationOptions {
            if_match: etag.map(str::to_string),
            retry_token: None,
        }
    }
}

/// One call, before signing.
#[derive(Clone, Debug)]
pub struct Call {
    pub operation: &'static str,
    pub method: Method,
    /// The service's path prefix: [`API_VERSION`] for Compute, empty for Object Storage.
    pub prefix: &'static str,
    /// Path below the prefix, e.g. `/instances/ocid1…`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub resource: Option<String>,
    pub options: MutationOptions,
    /// Whether the operation accepts `opc-retry-token` (one is generated when retries are on).
    pub retry_token: bool,
    /// Extra request headers (e.g. `if-none-match`).
    pub headers: Vec<(&'static str, String)>,
    /// The body's content type (default `application/json`).
    pub content_type: Option<String>,
    /// Sign without the body headers (Object Storage PutObject, as Oracle's SDK does).
    pub exclude_body: bool,
}

impl Call {
    pub fn new(operation: &'static str, method: Method, path: impl Into<String>) -> Call {
        Call {
            operation,
            method,
            prefix: API_VERSION,
            path: path.into(),
            query: Vec::new(),
            body: None,
            resource: None,
            options: MutationOptions::default(),
            retry_token: false,
            headers: Vec::new(),
            content_type: None,
            exclude_body: false,
        }
    }

    /// A call to a service whose paths have no version prefix (Object Storage).
    pub fn unversioned(mut self) -> Call {
        self.prefix = "";
        self
    }

    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.headers.push((k, v.into()));
        self
    }

    /// A raw body of `content_type`, signed without the body headers when `exclude_body`.
    pub fn raw_body(mut self, body: Vec<u8>, content_type: &str, exclude_body: bool) -> Call {
        self.body = Some(body);
        self.content_type = Some(content_type.to_string());
        self.exclude_body = exclude_body;
        self
    }

    pub fn query(mut self, k: &'static str, v: Option<impl ToString>) -> Call {
        if let Some(v) = v {
            self.query.push((k, v.to_string()));
        }
        self
    }

    pub fn json(mut self, body: &impl serde::Serialize) -> Call {
        self.body = Some(serde_json::to_vec(body).expect("request bodies serialise"));
        self
    }

    pub fn resource(mut self, id: &str) -> Call {
        self.resource = Some(id.to_string());
        self
    }

    pub fn mutation(mut self, options: &MutationOptions, accepts_retry_token: bool) -> Call {
        self.options = options.clone();
        self.retry_token = accepts_retry_token;
        self
    }
}

/// `quote_plus` as Python's requests encodes query values: unreserved bytes kept, space as `+`.
pub fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// 30 alphanumerics, like the SDK's tokens.
pub fn new_retry_token() -> String {
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(30)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_like_python_requests() {
        assert_eq!(
            encode_query_value("web server/ü+1"),
            "web+server%2F%C3%BC%2B1"
        );
        assert_eq!(encode_query_value("Uocm:PHX-AD-1"), "Uocm%3APHX-AD-1");
    }
}
