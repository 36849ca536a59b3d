//! Decoding responses into the return types of client methods.

use std::future::Future;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::BoxError;
use crate::body::{Json, ResponseBody};
use crate::error::ClientError;

/// A return type of a client method (the `T` of `Result<T, ClientError>`).
///
/// Implemented for [`Json<T>`], `String`, [`Bytes`], `()`, [`ResponseBody`] (streamed) and
/// `http::Response<ResponseBody>` (raw: every status is returned as is).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a client method",
    note = "return `Json<T>`, `String`, `Bytes`, `()`, `ResponseBody` or `http::Response<ResponseBody>`"
)]
pub trait FromResponse: Sized + Send {
    /// Whether error statuses are returned as responses rather than as errors.
    const ANY_STATUS: bool = false;

    /// Decodes the response; `method` names the trait method in errors.
    fn from_response<B>(
        resp: http::Response<B>,
        method: &'static str,
    ) -> impl Future<Output = Result<Self, ClientError>> + Send
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>;
}

pub(crate) async fn collect<B>(body: B, method: &'static str) -> Result<Bytes, ClientError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match body.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ClientError::transport(method, e)),
    }
}

impl<T: serde::de::DeserializeOwned + Send> FromResponse for Json<T> {
    async fn from_response<B>(
        resp: http::Response<B>,
        method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let bytes = collect(resp.into_body(), method).await?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| ClientError::decode(method, e))
    }
}

impl FromResponse for String {
    async fn from_response<B>(
        resp: http::Response<B>,
        method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let bytes = collect(resp.into_body(), method).await?;
        String::from_utf8(bytes.into()).map_err(|e| ClientError::decode(method, e))
    }
}

impl FromResponse for Bytes {
    async fn from_response<B>(
        resp: http::Response<B>,
        method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        collect(resp.into_body(), method).await
    }
}

impl FromResponse for () {
    async fn from_response<B>(
        resp: http::Response<B>,
        method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Read to the end so that the connection goes back to the pool.
        collect(resp.into_body(), method).await.map(drop)
    }
}

impl FromResponse for ResponseBody {
    async fn from_response<B>(
        resp: http::Response<B>,
        _method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Ok(ResponseBody::new(resp.into_body()))
    }
}

impl FromResponse for http::Response<ResponseBody> {
    const ANY_STATUS: bool = true;

    async fn from_response<B>(
        resp: http::Response<B>,
        _method: &'static str,
    ) -> Result<Self, ClientError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Ok(resp.map(ResponseBody::new))
    }
}
