//! gRPC clients get the same breaker stack, with no macro: a tonic client is a tower service
//! too. This example serves a unary method over h2c on loopback, calls it through
//! `CircuitBreakerLayer` + `GrpcClassifier` over the hyper-util transport, makes the server fail
//! until the breaker opens, and shows the rejection that follows.
//!
//! Run with `cargo run -p palisade-client --example grpc_breaker`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_breaker::GrpcClassifier;
use palisade_breaker::circuit::{CircuitBreakerLayer, Config, TripPolicy};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// Raw bytes as the gRPC message (a real service would use prost through `tonic-prost`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The unary method `/demo.Greeter/SayHello`; fails with `UNAVAILABLE` while `failing` is set.
#[derive(Clone)]
struct Greeter {
    failing: Arc<AtomicBool>,
}

impl tonic::server::UnaryService<Bytes> for Greeter {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        std::future::ready(if self.failing.load(Ordering::SeqCst) {
            Err(Status::unavailable("overloaded"))
        } else {
            let mut out = b"hello, ".to_vec();
            out.extend_from_slice(req.get_ref());
            Ok(tonic::Response::new(out.into()))
        })
    }
}

async fn serve(failing: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let greeter = Greeter {
                failing: failing.clone(),
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let greeter = greeter.clone();
                        async move {
                            let mut grpc = tonic::server::Grpc::new(RawCodec);
                            Ok::<_, Infallible>(grpc.unary(greeter, req).await)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Runs the demonstration; returns the outcome of each call.
pub async fn run() -> Vec<Result<Bytes, Status>> {
    let failing = Arc::new(AtomicBool::new(false));
    let addr = serve(failing.clone()).await;

    // The transport: hyper-util speaking HTTP/2 with prior knowledge.
    let transport: Client<HttpConnector, tonic::body::Body> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // The same breaker as the HTTP stack, with the gRPC classifier (UNAVAILABLE is a failure).
    let breaker = CircuitBreakerLayer::builder("greeter")
        .config(
            Config::builder()
                .trip(TripPolicy::consecutive_failures(2))
                .build()
                .unwrap(),
        )
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let stack = ServiceBuilder::new().layer(breaker).service(transport);
    let origin = format!("http://{addr}").parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(stack, origin);

    let mut outcomes = Vec::new();
    for i in 0..4 {
        // Calls 1 and 2 fail on the server; the breaker opens after the second.
        failing.store(i == 1 || i == 2, Ordering::SeqCst);
        let outcome = async {
            grpc.ready()
                .await
                .map_err(|e| Status::from_error(e.into()))?;
            let path = PathAndQuery::from_static("/demo.Greeter/SayHello");
            grpc.unary(
                tonic::Request::new(Bytes::from_static(b"palisade")),
                path,
                RawCodec,
            )
            .await
            .map(tonic::Response::into_inner)
        }
        .await;
        outcomes.push(outcome);
    }
    outcomes
}

/// Whether a status comes from a breaker rejection (through tonic's error wrapping).
pub fn is_rejection(status: &Status) -> bool {
    palisade_breaker::find_rejection(status).is_some()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for (i, outcome) in run().await.iter().enumerate() {
        match outcome {
            Ok(msg) => println!("call {i}: ok {:?}", String::from_utf8_lossy(msg)),
            Err(s) if is_rejection(s) => {
                println!("call {i}: rejected by the breaker ({})", s.message())
            }
            Err(s) if s.code() == Code::Unavailable => {
                println!("call {i}: server said UNAVAILABLE")
            }
            Err(s) => println!("call {i}: {s}"),
        }
    }
}
