use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/x", timeout = "soon")]
    async fn x(&self) -> Result<String, ClientError>;
    #[get("/y")]
    async fn y(&self) -> String;
}

fn main() {}
