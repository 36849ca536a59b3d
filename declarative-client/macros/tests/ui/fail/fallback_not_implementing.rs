use palisade_client::{client, ClientError};

#[client(fallback = NotAnApi)]
pub trait Api {
    #[get("/x")]
    async fn x(&self) -> Result<String, ClientError>;
}

pub struct NotAnApi;

fn main() {}
