//! The workloads: each drives a started server and reports what it measured as plain data.

pub mod durable;
pub mod fanout;
pub mod files;
pub mod idle;
pub mod storm;

use futures_util::stream::{self, StreamExt};

use crate::targets::{Server, Subscriber};

/// Connects `count` followers spread over `rooms` rooms, 64 at a time (a connect storm is its
/// own workload; here connections are set-up), in room order `i % rooms`.
pub async fn followers(
    server: &Server,
    count: usize,
    rooms: usize,
    first: usize,
) -> anyhow::Result<Vec<(usize, Subscriber)>> {
    stream::iter(first..first + count)
        .map(|i| async move {
            let room = i % rooms.max(1);
            Ok::<_, anyhow::Error>((room, server.subscriber(room, i).await?))
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
