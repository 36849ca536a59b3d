use palisade_client::{client, ClientError};

#[client]
pub trait Api {
    #[get("/titles/{id}")]
    async fn title(&self) -> Result<String, ClientError>;
}

fn main() {}
