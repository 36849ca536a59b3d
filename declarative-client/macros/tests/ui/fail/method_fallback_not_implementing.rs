use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/x", fallback = NotAnApi)]
    async fn x(&self) -> Result<String, ClientError>;
}

#[derive(Default)]
pub struct NotAnApi;

fn main() {}
