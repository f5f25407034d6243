//! A raw tonic client of the dev agent's Workload API, for the error cases the `spiffe`
//! crate's client cannot produce (missing or wrong metadata). Included by the dev agent tests
//! with `#[path]`, so only they compile it.

use std::path::Path;

use spike_server::dev::agent::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;

/// A tonic client over the socket that sends exactly the metadata we give it.
pub async fn raw_client(socket: &Path) -> SpiffeWorkloadApiClient<tonic::transport::Channel> {
    let path = socket.to_path_buf();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect to agent socket");
    SpiffeWorkloadApiClient::new(channel)
}

/// `message` with the `workload.spiffe.io: true` header every Workload API call must carry.
pub fn with_header<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("workload.spiffe.io", "true".parse().expect("ascii"));
    request
}
