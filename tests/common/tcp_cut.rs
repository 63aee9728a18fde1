//! A TCP proxy a test can cut and restore: the handlers reach a server (`MariaDB`) through it;
//! a cut closes every relayed connection and every new one as soon as it is accepted, as a
//! database that went away or a broken network would; a restore lets connections through again.
//!
//! A cut closes connections rather than refusing them on purpose: a refused connect makes the
//! database pool try again until its acquire timeout (seconds per attempt), a closed one fails
//! the attempt at once, so a test's outage costs milliseconds per attempt. What must stay true:
//! while cut, no byte reaches the server, so every failed attempt was a real failure.

#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// The proxy, listening on `127.0.0.1:port`.
pub struct TcpCut {
    pub port: u16,
    /// `true` while cut; every relay watches it.
    cut: watch::Sender<bool>,
    /// Connections closed by a cut: relayed ones cut off and new ones closed on accept.
    closed: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl TcpCut {
    /// A proxy to `upstream` (`host:port`), letting connections through.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, watch) = watch::channel(false);
        let closed = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept(listener, upstream, watch, Arc::clone(&closed)));
        Self {
            port,
            cut,
            closed,
            accept,
        }
    }

    /// Close every relayed connection and every new one until [`TcpCut::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Let new connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Connections a cut has closed so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for TcpCut {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: String,
    cut: watch::Receiver<bool>,
    closed: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(client);
            closed.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        tokio::spawn(relay(
            client,
            upstream.clone(),
            cut.clone(),
            Arc::clone(&closed),
        ));
    }
}

/// Copy both ways until either side closes or a cut comes.
async fn relay(
    mut client: TcpStream,
    upstream: String,
    mut cut: watch::Receiver<bool>,
    closed: Arc<AtomicU64>,
) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {
            closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}
