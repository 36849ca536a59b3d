use palisade_client::{client, Bytes, ClientError};

#[client]
pub trait Api {
    #[post("/titles")]
    async fn create(&self, #[body] a: Bytes, #[body] b: Bytes) -> Result<(), ClientError>;
}

fn main() {}
