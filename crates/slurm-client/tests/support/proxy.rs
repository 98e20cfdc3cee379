//! A byte-level loopback proxy in front of a real slurmrestd. It forwards bytes unchanged
//! and invents nothing; on demand it lets a request through to slurmrestd and then drops
//! the answer (closes the client's connection), which is how an answer gets lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; it stops with the test's runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: tokio::sync::watch::Sender<String>,
    drop_submits: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let drop_submits = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::watch::channel(upstream.to_string());
        let (ds, dd) = (drop_submits.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (ds, dd) = (ds.clone(), dd.clone());
                let mut changes = rx.clone();
                let up = changes.borrow_and_update().clone();
                tokio::spawn(async move {
                    let _ = serve(client, &up, ds, dd, &mut changes).await;
                });
            }
        });
        Proxy {
            addr,
            upstream: tx,
            drop_submits,
            dropped,
        }
    }

    /// Points the proxy at another slurmrestd and closes every open connection, as a
    /// restart of slurmrestd would (an upgrade, seen by the client at the same address).
    pub fn switch_upstream(&self, upstream: &str) {
        self.upstream.send_replace(upstream.to_string());
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets the next `n` job submits reach slurmrestd but drops their answers.
    pub fn drop_next_submit_answers(&self, n: usize) {
        self.drop_submits.store(n, Ordering::SeqCst);
    }

    /// Answers dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// One client connection: requests go upstream as they come; answers come back unless the
/// connection carried a submit that is to be dropped, in which case the client's socket is
/// closed once slurmrestd has started answering (so the job really exists).
async fn serve(
    mut client: TcpStream,
    upstream: &str,
    drop_submits: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    upstream_changes: &mut tokio::sync::watch::Receiver<String>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    let mut dropping = false;
    loop {
        tokio::select! {
            _ = upstream_changes.changed() => return Ok(()),
            n = client.read(&mut cbuf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                let head = &cbuf[..n.min(256)];
                let is_submit = head.starts_with(b"POST ")
                    && head.windows(10).any(|w| w == b"job/submit");
                if is_submit
                    && drop_submits
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
                        .is_ok()
                {
                    dropping = true;
                }
                server.write_all(&cbuf[..n]).await?;
            }
            n = server.read(&mut sbuf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                if dropping {
                    dropped.fetch_add(1, Ordering::SeqCst);
                    // Drop the answer and the connection: the client sees a reset.
                    return Ok(());
                }
                client.write_all(&sbuf[..n]).await?;
            }
        }
    }
}
