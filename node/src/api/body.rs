//! Request bodies: JSON whatever the `Content-Type` says, so `curl -d '{...}'` (which
//! sends `application/x-www-form-urlencoded`) and a POST with no type at all work. The
//! guard already refused anything a browser could send (any `Origin`), which is what a
//! strict content type would otherwise be for.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use std::time::Duration;

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body: the biggest the API takes is a push's list of ref updates (up
/// to 100,000 refs). Only requests that passed the token check get their body read.
pub(crate) const MAX_BODY: usize = 32 << 20;
/// Time for a request's body to arrive once its head has.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A JSON request body; an empty body reads as `{}`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(request, state))
            .await
            .map_err(|_| {
                ApiError(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {}s",
                        BODY_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the request body is not the JSON this endpoint takes: {e}"),
            )
        })
    }
}
