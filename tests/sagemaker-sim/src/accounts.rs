//! Whose access key signs a request. SageMaker partitions jobs by the caller's account; moto's
//! STS issues the credentials of assumed roles (access keys of the role's account), so the
//! simulator asks moto which account a key belongs to: `GetCallerIdentity` with that key in the
//! `Authorization` header (moto reads the key from it and does not check signatures). Answers
//! are cached per key: a key never changes its account.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

pub struct Accounts {
    /// moto's address (`http://host:port`), when accounts are told apart.
    sts: Option<String>,
    known: Mutex<HashMap<String, Option<String>>>,
}

impl Accounts {
    pub fn new(sts: Option<String>) -> Self {
        Accounts {
            sts,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The account of `access_key`; `None`: the simulator's default account (no STS endpoint,
    /// or STS does not answer).
    pub async fn of(&self, access_key: &str) -> Option<String> {
        let sts = self.sts.as_deref()?;
        if let Some(known) = self.known.lock().await.get(access_key) {
            return known.clone();
        }
        let answer = caller_identity(sts, access_key).await;
        if let Err(e) = &answer {
            eprintln!("sagemaker-sim: cannot ask STS for the account of {access_key}: {e}");
        }
        let account = answer.ok().flatten();
        self.known.lock().await.insert(access_key.to_string(), account.clone());
        account
    }
}

/// `GetCallerIdentity` for `access_key`, over plain HTTP to moto on loopback.
async fn caller_identity(sts: &str, access_key: &str) -> std::io::Result<Option<String>> {
    let authority = sts.trim_start_matches("http://").trim_end_matches('/').to_string();
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nAuthorization: AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&authority).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(between(&response, "<Account>", "</Account>").map(str::to_string))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}
