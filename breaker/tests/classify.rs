//! The HTTP and gRPC classifiers.

#[cfg(feature = "http")]
#[test]
fn http_statuses() {
    use palisade_breaker::{Classify, HttpClassifier, Outcome};
    let c = HttpClassifier::new();
    let r = |code: u16| http::Response::builder().status(code).body(()).unwrap();
    let classify = |c: &HttpClassifier, code| {
        let resp = r(code);
        Classify::<_, std::io::Error>::classify(c, Ok(&resp), None)
    };
    assert_eq!(classify(&c, 200), Outcome::Success);
    assert_eq!(classify(&c, 302), Outcome::Success);
    assert_eq!(classify(&c, 404), Outcome::Ignored);
    assert_eq!(classify(&c, 429), Outcome::Ignored);
    assert_eq!(classify(&c, 500), Outcome::Failure);
    assert_eq!(classify(&c, 503), Outcome::Failure);
    assert_eq!(
        classify(&c.count_too_many_requests(true), 429),
        Outcome::Failure
    );
    let err = std::io::Error::other("connect refused");
    assert_eq!(
        Classify::<http::Response<()>, _>::classify(&c, Err(&err), None),
        Outcome::Failure
    );
}

#[cfg(feature = "tonic")]
#[test]
fn grpc_codes() {
    use palisade_breaker::{Classify, GrpcClassifier, Outcome};
    use tonic::{Code, Status};
    let c = GrpcClassifier::new();
    let status = |s: Status| Classify::<tonic::Response<()>, Status>::classify(&c, Err(&s), None);
    assert_eq!(status(Status::unavailable("x")), Outcome::Failure);
    assert_eq!(status(Status::deadline_exceeded("x")), Outcome::Failure);
    assert_eq!(status(Status::not_found("x")), Outcome::Ignored);
    assert_eq!(status(Status::invalid_argument("x")), Outcome::Ignored);
    let ok = tonic::Response::new(());
    assert_eq!(
        Classify::<_, Status>::classify(&c, Ok(&ok), None),
        Outcome::Success
    );

    // Trailers-only error response at the HTTP level.
    let resp = |code: &str| {
        http::Response::builder()
            .status(200)
            .header("grpc-status", code)
            .body(())
            .unwrap()
    };
    let h = |r: http::Response<()>| Classify::<_, std::io::Error>::classify(&c, Ok(&r), None);
    assert_eq!(h(resp("14")), Outcome::Failure); // UNAVAILABLE
    assert_eq!(h(resp("5")), Outcome::Ignored); // NOT_FOUND
    assert_eq!(h(resp("0")), Outcome::Success);
    let plain = http::Response::builder().status(200).body(()).unwrap();
    assert_eq!(h(plain), Outcome::Success);

    let strict = c
        .with_failure(Code::NotFound)
        .without_failure(Code::Unknown);
    assert_eq!(strict.classify_code(Code::NotFound), Outcome::Failure);
    assert_eq!(strict.classify_code(Code::Unknown), Outcome::Ignored);
}
