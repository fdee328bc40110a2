//! A client of a running node's control API: where the node is (flags, variables, its
//! config file), the token handshake, and requests whose answers must prove they come
//! from the node. What `guts` and `git-remote-guts` share.

mod error;
mod sync;

use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Token};
use crate::terminal::safe;
use crate::{ApiAddress, ErrorBody, settings};

pub use error::ClientError;
pub use sync::{Progress, sync};

/// Timeout for long operations (imports, fetches).
pub const SLOW: Duration = Duration::from_secs(3600);

/// Which node to ask, as a user named it; what is not named comes from the node's
/// config file, then the defaults.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The node's control API address.
    pub api: Option<ApiAddress>,
    /// The node's data dir, where it writes its API token.
    pub data_dir: Option<PathBuf>,
    /// The node's config file, read for its `api` and `data_dir`.
    pub config: Option<PathBuf>,
}

impl Target {
    /// `GUTS_API`, `GUTS_DATA_DIR` and `GUTS_CONFIG` (for programs git runs, which take
    /// no flags).
    pub fn from_env() -> Result<Self, ClientError> {
        let api = match std::env::var("GUTS_API") {
            Ok(v) => {
                Some(
                    v.parse()
                        .map_err(|e: crate::ApiAddressError| ClientError::Variable {
                            var: "GUTS_API",
                            message: e.to_string(),
                        })?,
                )
            }
            Err(_) => None,
        };
        Ok(Target {
            api,
            data_dir: std::env::var_os("GUTS_DATA_DIR").map(PathBuf::from),
            config: std::env::var_os("GUTS_CONFIG").map(PathBuf::from),
        })
    }

    /// The address and data dir: what was named first, then the config file.
    pub fn resolve(&self) -> Result<Endpoint, ClientError> {
        let file = match self.config.clone().or_else(settings::default_config_file) {
            Some(path) => Some((settings::read_file_settings(&path)?, path)),
            None => None,
        };
        let from_file = file.as_ref().map(|(f, _)| f.clone()).unwrap_or_default();
        let api = match (&self.api, from_file.api) {
            (Some(a), _) => a.clone(),
            (None, Some(Some(a))) => settings::connectable(a),
            (None, Some(None)) => {
                return Err(ClientError::ApiOff {
                    file: file.map(|(_, p)| p).unwrap_or_default(),
                });
            }
            (None, None) => crate::DEFAULT_API_ADDR
                .parse()
                .expect("the default API address parses"),
        };
        Ok(Endpoint {
            api,
            data_dir: self.data_dir.clone().or(from_file.data_dir),
        })
    }
}

/// A node's control API address and, if known, its data dir.
#[derive(Debug, Clone)]
pub struct Endpoint {
    api: ApiAddress,
    data_dir: Option<PathBuf>,
}

impl Endpoint {
    /// The API address.
    pub fn api(&self) -> &ApiAddress {
        &self.api
    }

    /// The data dir named, or the default one.
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(crate::default_data_dir)
    }
}

/// A token this client may hold for the node, and where it came from.
struct Candidate {
    token: Token,
    /// The file, or the environment variable.
    source: String,
    /// The node's data dir, when the token came from a file in it.
    dir: Option<PathBuf>,
}

/// The token the node proved it holds.
struct Credential {
    token: Token,
    dir: Option<PathBuf>,
}

/// A client of one node's control API. Before it sends the token it has the node prove
/// it holds it (see [`guts_api::auth`]), and it checks that proof on every answer.
pub struct Client {
    endpoint: Endpoint,
    agent: ureq::Agent,
    credential: OnceCell<Credential>,
}

impl Client {
    /// A client of the node `target` names, answering within `timeout`.
    pub fn new(target: &Target, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_timeout(target, Some(timeout))
    }

    /// A client whose requests may take as long as the node keeps answering (a followed
    /// log), or `timeout` at most.
    pub fn with_timeout(target: &Target, timeout: Option<Duration>) -> Result<Self, ClientError> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .timeout_global(timeout)
            .build()
            .into();
        Ok(Client {
            endpoint: target.resolve()?,
            agent,
            credential: OnceCell::new(),
        })
    }

    /// The API address.
    pub fn addr(&self) -> &ApiAddress {
        &self.endpoint.api
    }

    /// The node's endpoint, for programs this client starts (git and its helper).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The node's data dir: where the token that it proved it holds was found, or the
    /// one named (or the default) when the token came from `GUTS_API_TOKEN`. Paths the
    /// node gives this client must lie inside it.
    pub fn data_dir(&self) -> Result<PathBuf, ClientError> {
        Ok(self
            .credential()?
            .dir
            .clone()
            .unwrap_or_else(|| self.endpoint.data_dir()))
    }

    /// `path` from the node, resolved (no `..`, no links), once it is known to lie inside
    /// the node's data dir: git runs on it, so a node (or whatever answered) cannot point
    /// this helper anywhere else. Callers read and write the node's store directly, so the
    /// node must share this machine's filesystem (not, say, run in a container).
    pub fn local_path(&self, path: &str) -> Result<PathBuf, ClientError> {
        let data_dir = self.data_dir()?;
        let resolved = std::fs::canonicalize(path).map_err(|_| ClientError::NotHere {
            addr: self.endpoint.api.clone(),
            path: safe(path).into_owned(),
        })?;
        let root = std::fs::canonicalize(&data_dir).map_err(|source| ClientError::DataDir {
            dir: data_dir.clone(),
            source,
        })?;
        if !resolved.starts_with(&root) {
            return Err(ClientError::OutsideDataDir {
                addr: self.endpoint.api.clone(),
                path: safe(path).into_owned(),
                root,
            });
        }
        Ok(resolved)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send_authorized(self.agent.get(self.url(path)), |r| r.call())?;
        self.decode(response)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send_authorized(self.agent.delete(self.url(path)), |r| r.call())?;
        self.decode(response)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let response = self.send_post(path, body)?;
        self.decode(response)
    }

    /// GETs `path` and returns the answer's lines as they arrive (JSON lines).
    pub fn get_lines(
        &self,
        path: &str,
    ) -> Result<impl Iterator<Item = std::io::Result<String>> + use<>, ClientError> {
        let response = self.send_authorized(self.agent.get(self.url(path)), |r| r.call())?;
        self.lines(response)
    }

    /// POSTs `body` and returns the answer's lines as they arrive (JSON lines).
    pub fn post_lines<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<impl Iterator<Item = std::io::Result<String>> + use<B>, ClientError> {
        let response = self.send_post(path, body)?;
        self.lines(response)
    }

    fn lines(
        &self,
        response: ureq::http::Response<ureq::Body>,
    ) -> Result<impl Iterator<Item = std::io::Result<String>> + use<>, ClientError> {
        use std::io::BufRead;
        if !response.status().is_success() {
            return Err(self
                .decode::<serde_json::Value>(response)
                .err()
                .unwrap_or_else(|| ClientError::Node("unexpected answer".into())));
        }
        let reader = std::io::BufReader::new(response.into_body().into_reader());
        Ok(reader.lines())
    }

    fn send_post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        self.send_authorized(self.agent.post(self.url(path)), |r| r.send_json(body))
    }

    /// Sends `request` (with `send`) carrying the token and a fresh nonce, once the node
    /// has proved it holds the token; the answer, once it proves it comes from the node
    /// (every answer must: the program on the port may have changed since).
    fn send_authorized<K>(
        &self,
        request: ureq::RequestBuilder<K>,
        send: impl FnOnce(
            ureq::RequestBuilder<K>,
        ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let credential = self.credential()?;
        let nonce = auth::nonce()?;
        let request = request
            .header(
                "Authorization",
                format!("Bearer {}", credential.token.to_hex()),
            )
            .header(auth::NONCE_HEADER, &nonce);
        let response = send(request).map_err(|e| self.unreachable(e))?;
        let proved = proof(&response)
            .is_some_and(|p| credential.token.verify_proof(&nonce, &self.host(), p));
        if !proved {
            return Err(ClientError::NoProof {
                addr: self.endpoint.api.clone(),
            });
        }
        Ok(response)
    }

    /// GETs an open plain-text path (`/health`) without the token; the body on success.
    pub fn get_open_text(&self, path: &str) -> Result<String, ClientError> {
        let mut response = self
            .agent
            .get(self.url(path))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            return Err(ClientError::Status {
                addr: self.endpoint.api.clone(),
                path: path.to_owned(),
                status: status.as_u16(),
                body: safe(body.trim()).into_owned(),
            });
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.api.url())
    }

    /// The `Host` ureq sends, which the node's proof covers.
    fn host(&self) -> String {
        self.endpoint.api.to_string()
    }

    /// The token the node proved it holds, in hex (`guts api-token`).
    pub fn token_hex(&self) -> Result<String, ClientError> {
        Ok(self.credential()?.token.to_hex())
    }

    fn credential(&self) -> Result<&Credential, ClientError> {
        if let Some(c) = self.credential.get() {
            return Ok(c);
        }
        let found = self.handshake()?;
        Ok(self.credential.get_or_init(|| found))
    }

    /// Finds which of the tokens this client can read the node at the address holds,
    /// by a challenge on the open `/health` endpoint: no token is sent to a program that
    /// cannot prove it has it.
    fn handshake(&self) -> Result<Credential, ClientError> {
        // Ask first: "no node here" is the likelier story than a missing token.
        let nonce = auth::nonce()?;
        let mut response = self
            .agent
            .get(self.url("/health"))
            .header(auth::NONCE_HEADER, &nonce)
            .call()
            .map_err(|e| self.unreachable(e))?;
        let (candidates, problems) = self.candidates()?;
        if candidates.is_empty() {
            if let Some(problem) = problems.into_iter().next() {
                return Err(problem);
            }
            let dir = self.endpoint.data_dir();
            return Err(ClientError::NoToken {
                file: auth::token_path(&dir),
                dir,
            });
        }
        if let Some(proof) = proof(&response)
            && let Some(c) = candidates
                .iter()
                .find(|c| c.token.verify_proof(&nonce, &self.host(), proof))
        {
            return Ok(Credential {
                token: c.token.clone(),
                dir: c.dir.clone(),
            });
        }
        if !response.status().is_success()
            && let Ok(body) = response.body_mut().read_json::<ErrorBody>()
        {
            return Err(ClientError::Refused {
                addr: self.endpoint.api.clone(),
                message: safe(&body.error).into_owned(),
            });
        }
        Err(ClientError::NotTheNode {
            addr: self.endpoint.api.clone(),
            sources: candidates.into_iter().map(|c| c.source).collect(),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        })
    }

    /// Tokens to try: `GUTS_API_TOKEN`, or the token files of the data dir (and of its
    /// `node-N` slots, for nodes that share one). Files that cannot be used are returned
    /// as problems, reported if nothing else works.
    fn candidates(&self) -> Result<(Vec<Candidate>, Vec<ClientError>), ClientError> {
        if let Ok(value) = std::env::var(auth::TOKEN_ENV) {
            let token = Token::parse(&value, auth::TOKEN_ENV)?;
            let source = auth::TOKEN_ENV.to_owned();
            return Ok((
                vec![Candidate {
                    token,
                    source,
                    dir: None,
                }],
                vec![],
            ));
        }
        let dir = self.endpoint.data_dir();
        let mut dirs = vec![dir.clone()];
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut slots: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("node-"))
                .map(|e| e.path())
                .collect();
            slots.sort();
            dirs.extend(slots);
        }
        let (mut found, mut problems) = (Vec::new(), Vec::new());
        for dir in dirs {
            let path = auth::token_path(&dir);
            match auth::read_token_file(&path) {
                Ok(token) => found.push(Candidate {
                    token,
                    source: path.display().to_string(),
                    dir: Some(dir),
                }),
                Err(auth::AuthError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e @ auth::AuthError::Io { .. }) => {
                    problems.push(ClientError::TokenUnreadable(e))
                }
                Err(e) => problems.push(e.into()),
            }
        }
        Ok((found, problems))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = response.status();
        if status.is_success() {
            return response
                .body_mut()
                .read_json()
                .map_err(|e| ClientError::Unreadable {
                    addr: self.endpoint.api.clone(),
                    why: e.to_string(),
                });
        }
        let message = response
            .body_mut()
            .read_json::<ErrorBody>()
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(ClientError::Node(safe(&message).into_owned()))
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        let addr = &self.endpoint.api;
        match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                let why = match e {
                    ureq::Error::Io(io) => io.to_string(),
                    other => other.to_string(),
                };
                ClientError::NoNode {
                    addr: addr.clone(),
                    why,
                }
            }
            ureq::Error::Timeout(_) => ClientError::Timeout { addr: addr.clone() },
            other => ClientError::Http {
                addr: addr.clone(),
                why: other.to_string(),
            },
        }
    }
}

/// The node's proof header on `response`, if any.
fn proof(response: &ureq::http::Response<ureq::Body>) -> Option<&str> {
    response
        .headers()
        .get(auth::PROOF_HEADER)
        .and_then(|p| p.to_str().ok())
}
