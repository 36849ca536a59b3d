//! `palisade-balancer` over tonic `Channel`s.
//!
//! Three local gRPC servers stand in for the instances of one service (`demo.Hello/Say`, a
//! unary method whose messages are raw bytes, so no code generation is needed); the third
//! answers `UNAVAILABLE`. Each endpoint is a lazily connected `tonic::transport::Channel`; the
//! balancer picks with P2C least outstanding and judges calls with the breaker crate's `GrpcClassifier`
//! (it reads `grpc-status` from trailers-only responses), so outlier detection ejects the failing
//! server. The client is tonic's own `tonic::client::Grpc` with the balancer as its transport.
//!
//! Run it with `cargo run -p example-balancer-tonic`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use palisade_balancer::discover::StaticList;
use palisade_balancer::{Balance, Config, Endpoint, OutlierConfig, Policy, Snapshot};
use palisade_breaker::GrpcClassifier;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// Raw bytes in, raw bytes out: a codec without protobuf.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

/// Encodes `Bytes` as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesEncoder;

/// Decodes a message as `Bytes`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesDecoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}

/// The server side of `demo.Hello/Say`: answers `hello from {id}`, or `UNAVAILABLE`.
#[derive(Debug, Clone, Copy)]
pub struct Hello {
    id: usize,
    healthy: bool,
}

impl NamedService for Hello {
    const NAME: &'static str = "demo.Hello";
}

impl UnaryService<Bytes> for Hello {
    type Response = Bytes;
    type Future = Ready<Result<Response<Bytes>, Status>>;
    fn call(&mut self, _req: Request<Bytes>) -> Self::Future {
        ready(if self.healthy {
            Ok(Response::new(Bytes::from(format!(
                "hello from {}",
                self.id
            ))))
        } else {
            Err(Status::unavailable("draining"))
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Hello {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let me = *self;
        Box::pin(async move {
            if req.uri().path() != "/demo.Hello/Say" {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(BytesCodec);
            Ok(grpc.unary(me, req).await)
        })
    }
}

/// Starts a gRPC server for `Hello { id, healthy }` on 127.0.0.1.
pub async fn serve(id: usize, healthy: bool) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = Server::builder()
            .serve_with_incoming(Hello { id, healthy }, TcpIncoming::from(listener))
            .await;
    });
    Ok(addr)
}

/// What the run saw.
#[derive(Debug)]
pub struct Summary {
    /// Successful replies per server (index = server id).
    pub per_server: [usize; 3],
    /// Calls that ended in a gRPC error.
    pub errors: usize,
    /// The balancer's snapshot at the end.
    pub snapshot: Snapshot,
}

/// Makes `calls` unary calls through the balancer.
pub async fn run(calls: usize) -> Result<Summary, palisade_balancer::BoxError> {
    let addrs = [
        serve(0, true).await?,
        serve(1, true).await?,
        serve(2, false).await?,
    ];
    let mut endpoints = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
        endpoints.push((i, Endpoint::new(channel)));
    }
    // Least outstanding rather than Peak-EWMA here: the calls below are sequential, and with
    // Peak-EWMA the first call's connection setup (tens of ms on a lazy channel) would make that
    // server look slow for several seconds of a sub-second demo.
    let config = Config::with_policy(Policy::LeastOutstanding).outlier(OutlierConfig {
        consecutive_failures: Some(5),
        max_ejection_percent: 0.34,
        ..OutlierConfig::default()
    });
    let lb = Balance::builder(StaticList::new(endpoints))
        .name("hello")
        .config(config)
        .classifier(GrpcClassifier::new())
        .build()?;
    let handle = lb.handle();
    let mut client = tonic::client::Grpc::new(lb);

    let mut per_server = [0; 3];
    let mut errors = 0;
    for _ in 0..calls {
        client.ready().await?;
        let reply = client
            .unary(
                Request::new(Bytes::from_static(b"hi")),
                http::uri::PathAndQuery::from_static("/demo.Hello/Say"),
                BytesCodec,
            )
            .await;
        match reply {
            Ok(r) => {
                let text = String::from_utf8(r.into_inner().to_vec())?;
                let id: usize = text.trim_start_matches("hello from ").parse()?;
                per_server[id] += 1;
            }
            Err(_) => errors += 1,
        }
    }
    Ok(Summary {
        per_server,
        errors,
        snapshot: handle.snapshot(),
    })
}
