//! OCI errors: operation, resource, HTTP status, OCI error code, message and `opc-request-id`
//! (the id Oracle support asks for).

use std::fmt;

use super::call::Call;
use crate::failpoint::Fault;

/// What kind of failure, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 412 `NoEtagMatch`: the resource changed since its etag was read.
    PreconditionFailed,
    /// 404.
    NotFound,
    /// 409 (`IncorrectState`, `Conflict`, a reused retry token, …).
    Conflict,
    /// 429 after every retry.
    Throttled,
    /// 5xx after every retry.
    Server,
    /// LaunchInstance's 500 `InternalError` "Out of host capacity.": no host in that availability
    /// or fault domain has room for the shape. Never retried as it is (the same place stays full
    /// for minutes); the caller may try another place ([`OciError::is_out_of_capacity`]).
    OutOfCapacity,
    /// 401 / 403.
    Auth,
    /// Any other 4xx.
    Client,
    /// Connection refused, reset, TLS, a body that could not be read.
    Transport,
    /// No answer within the request timeout.
    Timeout,
    /// The response could not be understood.
    Decode,
}

#[derive(Clone, Debug, miette::Diagnostic)]
#[diagnostic(code(kiln::oci::request_failed))]
pub struct OciError {
    pub kind: ErrorKind,
    /// OCI operation name, e.g. `UpdateInstance`.
    pub operation: &'static str,
    /// The resource id (or address) the call was about.
    pub resource: Option<String>,
    pub status: Option<u16>,
    /// OCI error code, e.g. `NoEtagMatch` (`Transport`, `Timeout` for failures without a response).
    pub code: String,
    pub message: String,
    pub opc_request_id: Option<String>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    #[help]
    pub help: Option<String>,
}

impl OciError {
    /// No host had room for the launch (see [`ErrorKind::OutOfCapacity`]).
    pub fn is_out_of_capacity(&self) -> bool {
        self.kind == ErrorKind::OutOfCapacity
    }

    /// An answer (or an item of it) that does not decode as the model of `operation`.
    pub fn decode(operation: &'static str, e: serde_json::Error) -> OciError {
        OciError {
            kind: ErrorKind::Decode,
            operation,
            resource: None,
            status: None,
            code: "InvalidResponse".into(),
            message: format!("cannot decode the response: {e}"),
            opc_request_id: None,
            attempts: 1,
            help: None,
        }
    }

    pub fn is_precondition_failed(&self) -> bool {
        self.kind == ErrorKind::PreconditionFailed
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// Name the resource in the message (e.g. a manifest address).
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.operation)?;
        if let Some(r) = &self.resource {
            write!(f, " on `{r}`")?;
        }
        write!(f, " failed: ")?;
        if let Some(s) = self.status {
            write!(f, "{s} ")?;
        }
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(id) = &self.opc_request_id {
            write!(f, " (opc-request-id: {id})")?;
        }
        if self.attempts > 1 {
            write!(f, " after {} attempts", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for OciError {}

/// The kind for an HTTP status and OCI code.
/// What an answer's status, code and message make of it. A capacity answer is told apart as
/// Oracle's own controllers tell it: status 500 and "out of host capacity" in the message, in any
/// case (oracle/cluster-api-provider-oci `cloud/ociutil/ociutil.go` `IsOutOfHostCapacity`, PR#473;
/// oracle/karpenter-provider-oci `pkg/oci/errors.go`, PR#36); the code is `InternalError`.
pub fn kind_of_answer(status: u16, code: &str, message: &str) -> ErrorKind {
    if status == 500
        && message
            .to_ascii_lowercase()
            .contains("out of host capacity")
    {
        return ErrorKind::OutOfCapacity;
    }
    kind_of(status, code)
}

pub fn kind_of(status: u16, code: &str) -> ErrorKind {
    match status {
        412 => ErrorKind::PreconditionFailed,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::Throttled,
        401 | 403 => ErrorKind::Auth,
        s if s >= 500 => ErrorKind::Server,
        _ if code == "NoEtagMatch" => ErrorKind::PreconditionFailed,
        _ => ErrorKind::Client,
    }
}

/// The error an injected fault stands for (see [`failpoint`]): an answer with that status, a
/// dropped connection, or a process that is no longer there to see anything.
pub(super) fn injected(call: &Call, fault: Fault) -> OciError {
    let (kind, status, code, message) = match fault {
        Fault::Status(s) => {
            let code = match s {
                401 => "NotAuthenticated",
                404 => "NotAuthorizedOrNotFound",
                409 => "Conflict",
                429 => "TooManyRequests",
                500 => "InternalServerError",
                _ => "InjectedFault",
            };
            (kind_of(s, code), Some(s), code, "injected answer")
        }
        Fault::Capacity => (
            ErrorKind::OutOfCapacity,
            Some(500),
            "InternalError",
            "Out of host capacity.",
        ),
        Fault::Lost | Fault::Error => (
            ErrorKind::Transport,
            None,
            "Transport",
            "connection closed before the answer (injected)",
        ),
        Fault::Abort => (
            ErrorKind::Transport,
            None,
            "Aborted",
            "the process was aborted (injected)",
        ),
    };
    OciError {
        kind,
        operation: call.operation,
        resource: call.resource.clone(),
        status,
        code: code.into(),
        message: message.into(),
        opc_request_id: None,
        attempts: 1,
        help: None,
    }
}
